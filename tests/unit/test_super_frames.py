"""Super-frames only to hosts known to accept them (doc/wire-format.md, "Super-frames"):
the segmentation vnetd does for every other destination, and the rules that learn
which hosts take them."""
from __future__ import annotations

import socket
import struct

from test_vnetd_rules import GROUP, HERE, LAN, LAN2, MAC_A, MAC_B, PORT, T0, Node, vudp  # noqa: F401

from vnet.datapath.vnetd.offload import PLAIN_FRAME_MAX, VNET_HDR_LEN, segment
from vnet.wire import formats as wire

import pytest

MSS = 1448


def fold(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def super_frame(payload: bytes, flags: int = 0x18 | 0x80 | 0x01, seq: int = 0xFFFFF000) -> bytes:
    """A TCP/IPv4 super-frame as a tap hands it over: virtio header (partial checksum,
    GSO TCPv4, gso_size MSS), the TCP checksum field holding the pseudo-header sum."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, seq, 7, 0x50, flags, 512, 0, 0)
    ip = wire.ipv4_header(socket.inet_aton("10.97.0.1"), socket.inet_aton("10.97.0.2"), 6,
                          len(tcp) + len(payload), ident=0xFFFE, df=True)
    hdr = struct.pack("<BBHHHH", 1, 1, 14 + 20 + 20, MSS, 34, 16)
    return hdr + MAC_B + MAC_A + b"\x08\x00" + ip + tcp + payload  # MAC_A to MAC_B


def tcp_ok(seg: bytes) -> bool:
    ip, tcp = seg[14:34], seg[34:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return fold(ip) == 0xFFFF and fold(pseudo + tcp) == 0xFFFF


def test_segment_cuts_at_gso_size_with_complete_checksums():
    payload = bytes(range(256)) * 20 + b"tail"               # 5124 bytes: 4 segments
    segs = segment(super_frame(payload))
    assert [len(s) - 54 for s in segs] == [MSS, MSS, MSS, len(payload) - 3 * MSS]
    assert b"".join(bytes(s[54:]) for s in segs) == payload
    assert all(tcp_ok(bytes(s)) for s in segs)
    assert [int.from_bytes(s[38:42], "big") for s in segs] == [(0xFFFFF000 + i * MSS) & 0xFFFFFFFF for i in range(4)]
    assert [int.from_bytes(s[18:20], "big") for s in segs] == [0xFFFE, 0xFFFF, 0, 1]
    assert [s[47] for s in segs] == [0x80 | 0x10, 0x10, 0x10, 0x10 | 0x08 | 0x01]  # CWR first; PSH, FIN last
    assert all(len(s) <= PLAIN_FRAME_MAX for s in segs)


def test_segment_refuses_what_is_not_a_tcp_super_frame():
    sf = bytearray(super_frame(bytes(3000)))
    sf[1] = 0                                                  # no GSO type
    assert segment(bytes(sf)) is None
    sf[1] = 1
    sf[VNET_HDR_LEN + 12:VNET_HDR_LEN + 14] = b"\x86\xdd"      # not the IPv4 it claims
    assert segment(bytes(sf)) is None


@pytest.fixture
def node():
    n = Node()
    yield n
    n.close()


def vnet_with_remote(node: Node, addr: str):
    """A vnet whose VM MAC_A is here (already announced) and MAC_B lives at addr."""
    v = node.vnet()
    node.tables.vifs.touch(v.vid, MAC_A, T0)
    node.tables.varp.learn(v.vid, MAC_B, addr, T0)
    return v


def datagram_sizes(node: Node, dst) -> list[int]:
    return [len(d) for d in node.udp.to(dst)]


def test_super_frame_only_to_a_host_known_to_take_it(node):
    v = vnet_with_remote(node, LAN)
    sf = super_frame(bytes(5000))
    node.tx.from_tap(v, [sf])                                  # LAN not known: segments
    assert datagram_sizes(node, (LAN, PORT)) == [22 + 54 + n for n in (MSS, MSS, MSS, 5000 - 3 * MSS)]
    node.udp.sent.clear()
    node.rx.from_udp(memoryview(wire.pack_varp(wire.VARP_ANNOUNCE, v.vid, MAC_B, LAN) + wire.VARP_EXT_SUPER), LAN)
    node.tx.from_tap(v, [sf])                                  # announced with the extension
    assert datagram_sizes(node, (LAN, PORT)) == [22 + len(sf) - VNET_HDR_LEN]
    node.udp.sent.clear()
    node.rx.from_udp(memoryview(wire.pack_varp(wire.VARP_ANNOUNCE, v.vid, MAC_B, LAN)), LAN)
    node.tx.from_tap(v, [sf])                                  # announced without it: plain again
    assert len(datagram_sizes(node, (LAN, PORT))) == 4


def test_a_super_frame_received_marks_its_sender(node):
    v = vnet_with_remote(node, LAN2)
    sf = super_frame(bytes(5000))
    received = bytearray(sf[VNET_HDR_LEN:])
    received[0:12] = MAC_A + MAC_B                              # from MAC_B to our MAC_A
    node.rx.from_udp(vudp(v, bytes(received)), LAN2)           # from LAN2: it takes them
    node.rx.from_udp(vudp(v, MAC_A + bytes.fromhex("aa00000000c3") + bytes(1678 - 12)), LAN)  # longest plain: no
    assert node.tables.supers.addrs == {LAN2}
    node.tx.from_tap(v, [sf])
    assert datagram_sizes(node, (LAN2, PORT)) == [22 + len(sf) - VNET_HDR_LEN]


def test_super_frame_to_the_group_goes_as_segments(node):
    v = node.vnet()
    node.tables.vifs.touch(v.vid, MAC_A, T0)
    node.tables.supers.add(LAN)
    node.tx.from_tap(v, [super_frame(bytes(3000))])            # unknown MAC: flooded
    assert datagram_sizes(node, (GROUP, PORT)) == [22 + 54 + n for n in (MSS, MSS, 3000 - 2 * MSS)]
    assert node.counts() == {"floods": 3, "unknown-unicast-floods": 3}


def test_no_offload_announces_without_the_extension():
    n = Node()
    try:
        assert n.tx.varp_ext == wire.VARP_EXT_SUPER
        v = n.vnet()
        n.tx.varp_ext = b""                                    # what vnetd --no-offload sets
        assert n.tx.varp_parts(v, MAC_A) == (wire.pack_varp(wire.VARP_ANNOUNCE, v.vid, MAC_A, HERE),)
    finally:
        n.close()
