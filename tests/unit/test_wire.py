"""Wire encoding against the reference's derived vectors (xen-vnet.md section 9), and the
fast-path codecs against the construct declarations."""
import random
import socket

import pytest

from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

A, B, C = "192.0.2.1", "192.0.2.2", "203.0.113.7"
GROUP = "224.10.0.1"
VID = VnetId.parse("97").packed
VM1 = bytes.fromhex("aa0000110011")
VM2 = bytes.fromhex("aa0000110012")


def hx(text: str) -> bytes:
    return bytes.fromhex("".join(line.split(":", 1)[-1] if ":" in line[:6] else line
                                 for line in text.strip().splitlines()).replace(" ", ""))


# T4's inner frame: VM1's ARP request for 198.51.100.12, 42 bytes.
ARP = hx("""
ff ff ff ff ff ff aa 00 00 11 00 11 08 06
00 01 08 00 06 04 00 01 aa 00 00 11 00 11 c6 33
64 0b 00 00 00 00 00 00 c6 33 64 0c
""")

T2 = hx("""
0000: 00 01 00 01 00 00 00 00 00 00 00 00 00 00 00 00
0010: 00 00 00 97 aa 00 00 11 00 12 02 c0 00 02 01 00
0020: 00 00 00 00 00 00 00 00 00 00 00
""")
T3 = hx("""
0000: 00 01 00 02 00 00 00 00 00 00 00 00 00 00 00 00
0010: 00 00 00 97 aa 00 00 11 00 12 02 c0 00 02 02 00
0020: 00 00 00 00 00 00 00 00 00 00 00
""")
T4 = hx("""
0000: 45 00 00 5c 00 00 00 00 40 11 d8 84 c0 00 02 01
0010: e0 0a 00 01 07 06 07 06 00 48 00 00 00 02 00 00
0020: 00 40 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0030: 00 97 ff ff ff ff ff ff aa 00 00 11 00 11 08 06
0040: 00 01 08 00 06 04 00 01 aa 00 00 11 00 11 c6 33
0050: 64 0b 00 00 00 00 00 00 c6 33 64 0c
""")
T5 = hx("""
0000: 45 00 00 50 00 00 40 00 40 61 b6 49 c0 00 02 01
0010: c0 00 02 02 00 40 00 00 00 00 00 00 00 00 00 00
0020: 00 00 00 00 00 97 ff ff ff ff ff ff aa 00 00 11
0030: 00 11 08 06 00 01 08 00 06 04 00 01 aa 00 00 11
0040: 00 11 c6 33 64 0b 00 00 00 00 00 00 c6 33 64 0c
""")
T6 = hx("""
0000: 45 00 00 7c 00 00 00 00 40 11 7c 68 c0 00 02 01
0010: cb 00 71 07 07 06 07 06 00 68 00 00 00 03 00 00
0020: 45 00 00 5c 00 00 00 00 40 11 00 00 00 00 00 00
0030: e0 0a 00 01 07 06 07 06 00 48 00 00 00 02 00 00
0040: 00 40 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0050: 00 97 ff ff ff ff ff ff aa 00 00 11 00 11 08 06
0060: 00 01 08 00 06 04 00 01 aa 00 00 11 00 11 c6 33
0070: 64 0b 00 00 00 00 00 00 c6 33 64 0c
""")

ip = socket.inet_aton


def test_vectors_parse_to_expected_sizes():
    assert (len(ARP), len(T2), len(T3), len(T4), len(T5), len(T6)) == (42, 43, 43, 92, 80, 124)


def test_t2_varp_request_fast_and_construct():
    fast = wire.pack_varp(wire.VARP_REQUEST, VID, VM2, A)
    built = wire.VarpMessage.build(dict(opcode=1, vnet=VID, vmac=VM2, family=2, addr=ip(A) + bytes(12)))
    assert fast == built == T2
    assert wire.unpack_varp(T2) == (1, VID, VM2, 2, ip(A) + bytes(12))
    # IP+UDP header of T2 (A -> group, TTL 64, ID 0)
    hdr = wire.ipv4_header(ip(A), ip(GROUP), 17, 8 + 43) + wire.udp_header(43)
    assert hdr == hx("45 00 00 47 00 00 00 00 40 11 d8 99 c0 00 02 01 e0 0a 00 01 07 06 07 06 00 33 00 00")


def test_t3_varp_announce():
    assert wire.pack_varp(wire.VARP_ANNOUNCE, VID, VM2, B) == T3
    hdr = wire.ipv4_header(ip(B), ip(A), 17, 8 + 43) + wire.udp_header(43)
    assert hdr == hx("45 00 00 47 00 00 00 00 40 11 f6 a2 c0 00 02 02 c0 00 02 01 07 06 07 06 00 33 00 00")


def test_t4_vudp_flood():
    payload = wire.vudp_prefix(VID) + ARP
    packet = wire.ipv4_header(ip(A), ip(GROUP), 17, 8 + len(payload)) + wire.udp_header(len(payload)) + payload
    assert packet == T4
    parsed = wire.VudpPacket.parse(T4[28:])
    assert parsed.header.id == wire.MSG_VUDP and parsed.header.opcode == 0
    assert parsed.etherip.word.version == 4 and parsed.etherip.vnet == VID
    assert parsed.frame == ARP
    udp = wire.UDPHeader.parse(T4[20:28])
    assert (udp.src_port, udp.dst_port, udp.length, udp.checksum) == (1798, 1798, 72, 0)


def test_t5_raw_etherip():
    payload = wire.etherip_prefix(VID) + ARP
    assert wire.ipv4_header(ip(A), ip(B), 97, len(payload), df=True) + payload == T5
    assert wire.EtherIPHeader.build(dict(word=dict(version=4, reserved=0), vnet=VID)) == wire.etherip_prefix(VID)


def test_t6_vfwd():
    inner_payload = wire.vudp_prefix(VID) + ARP
    inner = wire.vfwd_inner_udp(bytes(4), ip(GROUP), len(inner_payload)) + inner_payload
    vfwd = wire.VFWD_HEADER + inner
    outer = wire.ipv4_header(ip(A), ip(C), 17, 8 + len(vfwd)) + wire.udp_header(len(vfwd))
    assert outer + vfwd == T6
    parsed = wire.VfwdPacket.parse(vfwd)
    assert parsed.header.id == wire.MSG_VFWD
    assert parsed.ip.src == bytes(4) and parsed.ip.checksum == 0 and parsed.ip.dst == ip(GROUP)
    assert parsed.payload == inner[20:]


def test_t7_constants():
    assert wire.PORT == 0x0706 and wire.DEFAULT_GROUP == "224.10.0.1"
    assert wire.VARP_LEN == 43 == wire.VarpMessage.sizeof()
    assert wire.VNET_MSG_HEADER_LEN + wire.ETHERIP_HEADER_LEN + 20 + 8 == 50
    assert (wire.MSG_VARP, wire.MSG_VUDP, wire.MSG_VFWD) == (1, 2, 3)
    assert (wire.VARP_REQUEST, wire.VARP_ANNOUNCE, wire.AF_INET_VARP) == (1, 2, 2)


@pytest.mark.parametrize("b0,b1,ok", [(0x00, 0x40, True), (0x40, 0x00, True), (0x00, 0x30, False),
                                      (0x30, 0x00, False), (0x40, 0x01, False), (0x00, 0x41, True)])
def test_etherip_version_check(b0, b1, ok):
    assert wire.etherip_version_ok(b0, b1) is ok


def test_fast_path_matches_construct_on_random_values():
    rnd = random.Random(7)
    for _ in range(200):
        vid = rnd.randbytes(16)
        mac = rnd.randbytes(6)
        addr = socket.inet_ntoa(rnd.randbytes(4))
        op = rnd.choice([1, 2])
        fast = wire.pack_varp(op, vid, mac, addr)
        assert fast == wire.VarpMessage.build(dict(opcode=op, vnet=vid, vmac=mac, family=2,
                                                   addr=ip(addr) + bytes(12)))
        hdr = wire.VnetMsgHeader.build(dict(id=2, opcode=0)) + wire.EtherIPHeader.build(
            dict(word=dict(version=4, reserved=0), vnet=vid))
        assert wire.vudp_prefix(vid) == hdr
        n = rnd.randrange(0, 1500)
        src, dst = rnd.randbytes(4), rnd.randbytes(4)
        fast_ip = wire.ipv4_header(src, dst, 17, n, ttl=rnd.randrange(1, 256))
        parsed = wire.IPv4Header.parse(fast_ip)
        assert parsed.total_length == 20 + n and parsed.src == src and parsed.dst == dst
        assert wire.ipv4_checksum(fast_ip) == 0  # a valid header sums to 0xffff
