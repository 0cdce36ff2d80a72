"""The Wireshark dissector (contrib/wireshark/vnet.lua) on the documented test vectors.

tshark is the judge: the vectors of doc/wire-format.md (T2-T6) and doc/security.md
(S1-S5), and packets made with vnet/wire's builders, are written into a pcap and read
back with `tshark -X lua_script:vnet.lua -T fields`.  A genuine RFC 3378 EtherIP packet
must still be Wireshark's own etherip.  No root needed.
"""
from __future__ import annotations

import socket
import struct

import pytest
from test_seal import S1_AUTH, S2_CONF, S3_VARP, S4_CHALLENGE, S5_ANSWER
from test_wire import ARP, T2, T3, T4, T5, T6

from lab import wireshark
from vnet.wire import formats as wire

VID = (0x97).to_bytes(16, "big")
A, B, C = (socket.inet_aton(a) for a in ("192.0.2.1", "192.0.2.2", "203.0.113.7"))
GROUP = socket.inet_aton(wire.DEFAULT_GROUP)
VM1, VM2 = bytes.fromhex("aa0000110011"), bytes.fromhex("aa0000110012")
SESSION_A, SESSION_B = bytes(range(0xA0, 0xB0)).hex(), bytes(range(0xB0, 0xC0)).hex()
#: S2 in the format before sessions (message id 4, a 38-byte header, sequence 0x100000002).
OLD_S2 = bytes.fromhex(
    "0004020200000000000000000000000000000097010000000000c00002010000000100000002b8e368367f391782142dbce7d08ab171"
    "9281aa90dd0fbe56e824ba92e632cd105be9a34941b3e81a4421fa2a3aaf501065d1a1f944b659bd4001")

FIELDS = ("vnet.msg", "vnet.id", "vnet.varp.op", "vnet.varp.mac", "vnet.varp.addr", "vnet.varp.super",
          "vnet.seal.type", "vnet.seal.level", "vnet.seal.keyid", "vnet.seal.sender", "vnet.seal.seq",
          "vnet.seal.session", "vnet.seal.counter", "vnet.seal.body",
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
    "S4 challenge": udp(B, A, S4_CHALLENGE),
    "S5 answer": udp(A, B, S5_ANSWER),
    "old format": udp(A, GROUP, OLD_S2),
    "old format on raw EtherIP": raw(A, B, OLD_S2),
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
    "S1 auth frame": {"vnet.msg": "5", "vnet.id": "97", "vnet.seal.type": "2", "vnet.seal.level": "1",
                      "vnet.seal.keyid": "1", "vnet.seal.sender": "192.0.2.1", "vnet.seal.session": SESSION_A,
                      "vnet.seal.counter": "2", "vnet.seal.seq": "", "vnet.frame_len": "42",
                      "arp.dst.proto_ipv4": "198.51.100.12"},
    "S2 conf frame": {"vnet.msg": "5", "vnet.seal.type": "2", "vnet.seal.level": "2", "vnet.seal.keyid": "1",
                      "vnet.seal.sender": "192.0.2.1", "vnet.seal.session": SESSION_A, "vnet.seal.counter": "2",
                      "vnet.frame_len": "", "arp.dst.proto_ipv4": ""},
    "S3 conf VARP": {"vnet.msg": "5", "vnet.seal.type": "1", "vnet.seal.level": "2", "vnet.seal.keyid": "1",
                     "vnet.seal.sender": "192.0.2.2", "vnet.seal.session": SESSION_B, "vnet.seal.counter": "3",
                     "vnet.varp.mac": ""},
    "S2 on raw EtherIP": {"vnet.msg": "5", "vnet.id": "97", "vnet.seal.level": "2",
                          "vnet.seal.sender": "192.0.2.1", "vnet.seal.counter": "2", "etherip.ver": ""},
    "S4 challenge": {"vnet.msg": "5", "vnet.seal.type": "3", "vnet.seal.level": "2", "vnet.seal.sender": "192.0.2.2",
                     "vnet.seal.session": SESSION_B, "vnet.seal.counter": "4",
                     "vnet.seal.body": S4_CHALLENGE[50:66].hex()},
    "S5 answer": {"vnet.msg": "5", "vnet.seal.type": "4", "vnet.seal.sender": "192.0.2.1",
                  "vnet.seal.session": SESSION_A, "vnet.seal.counter": "3"},
    "old format": {"vnet.msg": "4", "vnet.id": "97", "vnet.seal.type": "2", "vnet.seal.level": "2",
                   "vnet.seal.sender": "192.0.2.1", "vnet.seal.seq": str(0x100000002), "vnet.seal.counter": "",
                   "vnet.seal.session": ""},
    "old format on raw EtherIP": {"vnet.msg": "4", "vnet.id": "97", "vnet.seal.sender": "192.0.2.1",
                                  "vnet.seal.seq": str(0x100000002), "etherip.ver": ""},
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
