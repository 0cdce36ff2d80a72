"""A socket endpoint as one of its vnet's attachments (doc/endpoints.md, "In the vnet"):
a real UDP endpoint on the loopback, driven by vnetd's loop, with the packet rules of
one host (test_vnetd_rules.Node) around it.  The far socket plays the VM's QEMU."""
from __future__ import annotations

import socket
import struct

import pytest
from test_super_frames import MSS, fold, super_frame, tcp_ok
from test_vnetd_rules import BCAST, GROUP, LAN, MAC_A, MAC_B, PORT, Node, frame, vudp

from vnet.datapath.vnetd.endpoint import EndpointAttachment
from vnet.datapath.vnetd.loop import Loop
from vnet.datapath.vnetd.offload import ZERO_HDR
from vnet.datapath.vnetd.vnets import Vnet
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec

MAC_Q = bytes.fromhex("525400140001")  # the VM behind the endpoint


@pytest.fixture
def node():
    n = Node()
    yield n
    n.close()


class Wired:
    """vnet 97 (MTU `mtu`) of `node` with a udp endpoint, glued as the daemon glues it,
    and the VM's socket."""

    def __init__(self, node: Node, mtu: int = 1500) -> None:
        cfg = VnetConfig.from_cli("97", mtu=mtu)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.setblocking(False)
        node.closing += (ours, theirs)
        self.v = v = Vnet(cfg, ours.fileno(), False, [])
        node.tables.vnets[v.vid] = v
        node.taps[v.vid] = theirs
        self.vm = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.vm.bind(("127.0.0.1", 0))
        self.vm.setblocking(False)
        node.closing.append(self.vm)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        ours_at = probe.getsockname()
        probe.close()
        spec = EndpointSpec.parse(["udp", f"127.0.0.1:{ours_at[1]}", f"127.0.0.1:{self.vm.getsockname()[1]}"])
        self.ours = ours_at
        self.loop = Loop(lambda now: None)
        self.att = att = EndpointAttachment(spec)

        def receive(_ep, frames) -> None:
            node.tx.from_tap(v, att.framed(frames), att)

        att.open(self.loop, receive)
        v.endpoints[spec] = att
        v.set_attachments()

    def from_vm(self, *frames: bytes) -> None:
        for f in frames:
            self.vm.sendto(f, self.ours)
        self.loop.poll_once(1.0)

    def to_vm(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.vm.recv(70000))
            except BlockingIOError:
                return got

    def close(self) -> None:
        self.att.close()
        self.loop.close()


@pytest.fixture
def wired(node):
    w = Wired(node)
    yield w
    w.close()


def test_an_endpoint_is_switched_like_a_port_and_never_echoes(node, wired):
    v, att = wired.v, wired.att
    assert v.switching and v.attachments == [v.tap, att]
    bcast = frame(BCAST, MAC_Q)
    wired.from_vm(bcast)
    # To the tap and the network, never back to the VM.
    assert node.tapped(v) == [ZERO_HDR + bcast] and wired.to_vm() == []
    assert [d for d in node.udp.to((GROUP, PORT)) if d.endswith(bcast)]
    assert v.macs[MAC_Q] is att and att.ep.rx_packets == 1
    # From the tap's VM to the endpoint's: to the endpoint only, without the header.
    node.tx.from_tap(v, [ZERO_HDR + frame(MAC_Q, MAC_A)])
    assert wired.to_vm() == [frame(MAC_Q, MAC_A)]
    # From the network: to the endpoint's VM there only; a broadcast to both.
    node.rx.from_udp(vudp(v, frame(MAC_Q, MAC_B)), LAN)
    assert wired.to_vm() == [frame(MAC_Q, MAC_B)] and node.tapped(v) == []
    node.rx.from_udp(vudp(v, frame(BCAST, MAC_B)), LAN)
    assert wired.to_vm() == [frame(BCAST, MAC_B)] and node.tapped(v) == [ZERO_HDR + frame(BCAST, MAC_B)]
    # A 9000-byte frame from the VM crosses whole.
    jumbo = frame(MAC_B, MAC_Q, 9014)
    wired.from_vm(jumbo)
    assert node.udp.to((LAN, PORT))[-1].endswith(jumbo) and wired.to_vm() == []
    assert att.ep.counters()["tx_packets"] == 3


def test_what_reaches_the_vm_is_plain_frames_with_checksums(node, wired):
    """A super-frame from the tap is cut at its gso_size; a partial checksum is finished."""
    payload = bytes(range(256)) * 12                       # 3072 bytes: 3 segments
    big = super_frame(payload)
    big = big[:10] + MAC_Q + big[16:]                      # to the VM behind the endpoint
    wired.v.macs[MAC_Q] = wired.att
    node.tx.from_tap(wired.v, [big])
    segs = wired.to_vm()
    assert [len(s) - 54 for s in segs] == [MSS, MSS, len(payload) - 2 * MSS]
    assert all(tcp_ok(s) for s in segs) and b"".join(s[54:] for s in segs) == payload
    one = super_frame(b"x" * 100)
    one = bytearray(one[:10] + MAC_Q + one[16:])
    one[1] = 0                                             # NEEDS_CSUM, no GSO: one frame
    ip = one[24:44]                                        # the pseudo-header sum, as a NIC leaves it
    one[60:62] = fold(ip[12:20] + struct.pack("!BBH", 0, 6, len(one) - 44)).to_bytes(2, "big")
    node.tx.from_tap(wired.v, [bytes(one)])
    (got,) = wired.to_vm()
    assert tcp_ok(got) and got[54:] == b"x" * 100


def test_a_super_frame_from_the_network_is_cut_to_the_vnet_mtu(node):
    w = Wired(node, mtu=9000)
    try:
        payload = bytes(range(256)) * 100                  # 25600 bytes, MSS from MTU 9000
        sf = super_frame(payload)[10:]
        sf = MAC_Q + sf[6:]
        ip = bytearray(sf[14:34])
        struct.pack_into("!H", ip, 2, len(sf) - 14)
        sf = sf[:14] + bytes(ip) + sf[34:]
        w.v.macs[MAC_Q] = w.att
        node.rx.from_udp(vudp(w.v, sf), LAN)
        segs = w.to_vm()
        assert len(segs) == 3 and all(len(s) <= 9000 + 14 for s in segs), [len(s) for s in segs]
        assert b"".join(s[54:] for s in segs) == payload and all(tcp_ok(s) for s in segs)
    finally:
        w.close()
