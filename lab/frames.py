"""Hand-built ARP and ICMP echo frames, for tests that talk to a VM with no stack of
their own in between (a socket endpoint, QEMU's socket NIC): whatever answers them is
the VM's kernel, so an answer proves a frame crossed whole in both directions."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from vnet.model.addr import format_mac, parse_mac
from vnet.wire.formats import ipv4_checksum, ipv4_header

ETH_ARP = b"\x08\x06"
ETH_IP = b"\x08\x00"
BROADCAST = b"\xff" * 6


@dataclass(frozen=True)
class Station:
    """A MAC and IPv4 address that the test speaks as."""

    mac: bytes
    ip: str

    @classmethod
    def of(cls, mac: str, ip: str) -> Station:
        return cls(parse_mac(mac), ip)

    def arp_request(self, target_ip: str) -> bytes:
        return (BROADCAST + self.mac + ETH_ARP + bytes.fromhex("0001080006040001") + self.mac
                + socket.inet_aton(self.ip) + bytes(6) + socket.inet_aton(target_ip))

    def echo_request(self, dst_mac: bytes, dst_ip: str, ident: int, seq: int, payload: bytes) -> bytes:
        """An ICMP echo request; `payload` of even length (the checksum helper's rule)."""
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
        body = body[:2] + struct.pack("!H", ipv4_checksum(body)) + body[4:]
        ip = ipv4_header(socket.inet_aton(self.ip), socket.inet_aton(dst_ip), 1, len(body),
                         ident=seq & 0xFFFF)
        return dst_mac + self.mac + ETH_IP + ip + body


def arp_reply_from(frame: bytes, ip: str) -> bytes | None:
    """The MAC of `ip` if `frame` is its ARP reply, else None."""
    if len(frame) < 42 or frame[12:14] != ETH_ARP or frame[20:22] != b"\x00\x02":
        return None
    if frame[28:32] != socket.inet_aton(ip):
        return None
    return frame[22:28]


def echo_reply(frame: bytes, src_ip: str, ident: int) -> tuple[int, bytes] | None:
    """(seq, payload) if `frame` is an ICMP echo reply from `src_ip` with id `ident`."""
    if len(frame) < 42 or frame[12:14] != ETH_IP or frame[23] != 1:
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[26:30] != socket.inet_aton(src_ip):
        return None
    icmp = frame[14 + ihl:]
    total = struct.unpack("!H", frame[16:18])[0]
    icmp = icmp[:total - ihl]
    if len(icmp) < 8 or icmp[0] != 0:
        return None
    rid, seq = struct.unpack("!HH", icmp[4:8])
    if rid != ident:
        return None
    return seq, icmp[8:]


__all__ = ["Station", "arp_reply_from", "echo_reply", "format_mac"]
