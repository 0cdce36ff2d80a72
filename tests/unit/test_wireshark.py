"""The Wireshark dissector (contrib/wireshark/vnet.lua) on the documented test vectors.

tshark is the judge: the vectors of doc/wire-format.md (T2-T6) and doc/security.md
(S1-S3), and packets made with vnet/wire's builders, are written into a pcap and read
back with `tshark -X lua_script:vnet.lua -T fields`.  A genuine RFC 3378 EtherIP packet
must still be Wireshark's own etherip.  No root needed.
"""
from __future__ import annotations

import socket
import struct

import pytest
from test_seal import S1_AUTH, S2_CONF, S3_VARP
from test_wire import ARP, T2, T3, T4, T5, T6

from lab import wireshark
from vnet.wire import formats as wire

VID = (0x97).to_bytes(16, "big")
A, B, C = (socket.inet_aton(a) for a in ("192.0.2.1", "192.0.2.2", "203.0.113.7"))
GROUP = socket.inet_aton(wire.DEFAULT_GROUP)
VM1, VM2 = bytes.fromhex("aa0000110011"), bytes.fromhex("aa0000110012")

FIELDS = ("vnet.msg", "vnet.id", "vnet.varp.op", "vnet.varp.mac", "vnet.varp.addr", "vnet.varp.super",
          "vnet.seal.type", "vnet.seal.level", "vnet.seal.keyid", "vnet.seal.sender", "vnet.seal.seq",
          "vnet.vfwd.src", "vnet.vfwd.dst", "vnet.vfwd.original", "vnet.frame_len", "vnet.superframe",
          "arp.dst.proto_ipv4", "icmp.type", "icmp.seq", "tcp.dstport", "etherip.ver", "frame.protocols")


def udp(src: bytes, dst: bytes, payload: bytes) -> bytes:
    """An IPv4 packet of UDP 1798 -> 1798 carrying `payload`, as our hosts send it."""
    return wire.ipv4_header(src, dst, wire.IPPROTO_UDP, 8 + len(payload)) + wire.udp_header(len(payload)) + payload


def raw(src: bytes, dst: bytes, payload: bytes) -> bytes:
    return wire.ipv4_header(src, dst, wire.IPPROTO_ETHERIP, len(payload), df=True) + payload


def ipv4_frame(src_mac: bytes, dst_mac: bytes, protocol: int, payload: bytes) -> bytes:
    ip = wire.ipv4_header(bytes([198, 51, 100, 11]), bytes([198, 51, 100, 12]), protocol, len(payload))
    return dst_mac + src_mac + b"\x08\x00" + ip + payload


def icmp_echo(seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq) + b"vnet" * 8
    csum = wire.ipv4_checksum(body)
    return body[:2] + struct.pack("!H", csum) + body[4:]


# The issue-13 relay of the original forwarder: only protocol, source, destination.
ORIGINAL_RELAY = (wire.VFWD_HEADER + bytes(9) + b"\x11" + bytes(2) + socket.inet_aton("10.0.0.2") + GROUP
                  + bytes.fromhex("0706070600000000") + T4[28:])

PACKETS = {
    "T2 request": udp(A, GROUP, T2),
    "T3 announce + extension": udp(B, A, T3 + wire.VARP_EXT_SUPER),
    "T4 VUDP flood": T4,
    "T5 raw EtherIP": T5,
    "T6 VFWD": T6,
    "S1 auth frame": udp(A, GROUP, S1_AUTH),
    "S2 conf frame": udp(A, GROUP, S2_CONF),
    "S3 conf VARP": udp(B, A, S3_VARP),
    "S2 on raw EtherIP": raw(A, B, S2_CONF),
    "ping on VUDP": udp(A, B, wire.vudp_prefix(VID) + ipv4_frame(VM1, VM2, 1, icmp_echo(7))),
    "ping on raw EtherIP": raw(A, B, wire.etherip_prefix(VID) + ipv4_frame(VM1, VM2, 1, icmp_echo(8))),
    "super-frame": udp(A, B, wire.vudp_prefix(VID) + ipv4_frame(
        VM1, VM2, 6, struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 0x50, 0x10, 512, 0, 0) + bytes(3000))),
    "original relay": udp(C, A, ORIGINAL_RELAY),
    "RFC 3378": raw(A, B, b"\x30\x00" + ARP),
}

EXPECTED = {
    "T2 request": {"vnet.msg": "1", "vnet.id": "97", "vnet.varp.op": "1", "vnet.varp.mac": "aa:00:00:11:00:12",
                   "vnet.varp.addr": "192.0.2.1", "vnet.varp.super": ""},
    "T3 announce + extension": {"vnet.msg": "1", "vnet.varp.op": "2", "vnet.varp.mac": "aa:00:00:11:00:12",
                                "vnet.varp.addr": "192.0.2.2", "vnet.varp.super": "1"},
    "T4 VUDP flood": {"vnet.msg": "2", "vnet.id": "97", "vnet.frame_len": "42", "vnet.superframe": "",
                      "arp.dst.proto_ipv4": "198.51.100.12"},
    "T5 raw EtherIP": {"vnet.msg": "", "vnet.id": "97", "vnet.frame_len": "42",
                       "arp.dst.proto_ipv4": "198.51.100.12", "etherip.ver": ""},
    "T6 VFWD": {"vnet.msg": "3,2", "vnet.id": "97", "vnet.vfwd.src": "0.0.0.0", "vnet.vfwd.dst": "224.10.0.1",
                "vnet.vfwd.original": "", "arp.dst.proto_ipv4": "198.51.100.12"},
    "S1 auth frame": {"vnet.msg": "4", "vnet.id": "97", "vnet.seal.type": "2", "vnet.seal.level": "1",
                      "vnet.seal.keyid": "1", "vnet.seal.sender": "192.0.2.1", "vnet.seal.seq": str(0x100000002),
                      "vnet.frame_len": "42", "arp.dst.proto_ipv4": "198.51.100.12"},
    "S2 conf frame": {"vnet.msg": "4", "vnet.seal.type": "2", "vnet.seal.level": "2", "vnet.seal.keyid": "1",
                      "vnet.seal.sender": "192.0.2.1", "vnet.seal.seq": str(0x100000002), "vnet.frame_len": "",
                      "arp.dst.proto_ipv4": ""},
    "S3 conf VARP": {"vnet.msg": "4", "vnet.seal.type": "1", "vnet.seal.level": "2", "vnet.seal.keyid": "1",
                     "vnet.seal.sender": "192.0.2.2", "vnet.seal.seq": str(0x100000003), "vnet.varp.mac": ""},
    "S2 on raw EtherIP": {"vnet.msg": "4", "vnet.id": "97", "vnet.seal.level": "2",
                          "vnet.seal.sender": "192.0.2.1", "etherip.ver": ""},
    "ping on VUDP": {"vnet.msg": "2", "vnet.id": "97", "icmp.type": "8", "icmp.seq": "7"},
    "ping on raw EtherIP": {"vnet.id": "97", "icmp.type": "8", "icmp.seq": "8"},
    "super-frame": {"vnet.msg": "2", "vnet.superframe": "1", "vnet.frame_len": str(14 + 20 + 20 + 3000),
                    "tcp.dstport": "5201"},
    "original relay": {"vnet.msg": "3,2", "vnet.vfwd.original": "1", "vnet.vfwd.src": "10.0.0.2",
                       "vnet.vfwd.dst": "224.10.0.1", "vnet.id": "97", "arp.dst.proto_ipv4": "198.51.100.12"},
    "RFC 3378": {"vnet.msg": "", "vnet.id": "", "etherip.ver": "3", "arp.dst.proto_ipv4": "198.51.100.12"},
}


@pytest.fixture(scope="module")
def decoded(tmp_path_factory) -> dict[str, dict[str, str]]:
    assert wireshark.tshark(), "tshark is not installed (setup.sh installs it)"
    pcap = wireshark.write_pcap(tmp_path_factory.mktemp("ws") / "vectors.pcap", PACKETS.values(),
                                wireshark.LINKTYPE_RAW)
    rows = wireshark.fields(pcap, FIELDS)
    assert len(rows) == len(PACKETS)
    return dict(zip(PACKETS, rows))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_vector_decodes_to_its_fields(decoded, name):
    got = decoded[name]
    assert {k: got[k] for k in EXPECTED[name]} == EXPECTED[name], got


def test_without_the_dissector_our_packets_are_not_understood(tmp_path):
    """What the dissector is for: Wireshark alone reads T5 as RFC 3378 EtherIP with a
    made-up Ethernet header, and a VUDP packet as plain UDP."""
    pcap = wireshark.write_pcap(tmp_path / "t.pcap", [T4, T5], wireshark.LINKTYPE_RAW)
    rows = wireshark.fields(pcap, ["frame.protocols", "arp.dst.proto_ipv4"], dissector=None)
    assert [r["arp.dst.proto_ipv4"] for r in rows] == ["", ""], rows
    assert "etherip" in rows[1]["frame.protocols"]
