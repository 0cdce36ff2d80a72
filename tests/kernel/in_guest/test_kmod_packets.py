"""Hostile packets on the module's receive path: TCP super-frames a remote host
crafts, received while a packet socket on the underlay holds a clone of them, or
reassembled from IP fragments of the sender's choosing and segmented again in
software on the way to the VM; and the edge cases of tests/netns/test_packet_limits.py
(the VLAN one on both datapaths, which this machine's own kernel cannot run).

A kernel WARNING or BUG here fails the run: test_guest.py reads the guest's log."""
from __future__ import annotations

import ctypes
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool
from conftest import EXAMPLES
from netns.test_packet_limits import (  # noqa: F401  (collected here, with the module)
    full_size_vlan_frames_cross_hosts,
    test_multicast_too_long_for_a_vfwd_is_dropped_and_counted,
)

from lab.capture import Capture
from lab.traffic import send_datagrams
from lab.procs import script_argv
from lab.vnethost import run_in_namespace
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire


@pytest.mark.parametrize("datapath", ["kmod", "vnetd"])
def test_full_size_vlan_frames_on_both_datapaths(lab, make_hosts, datapath):
    full_size_vlan_frames_cross_hosts(lab, make_hosts, datapath)


#: The source of the crafted TCP segments: a VM that does not exist.
FAKE_MAC = "aa:00:00:00:00:63"
FAKE_IP = "10.97.0.99"
TCP_SPORT, TCP_DPORT = 40999, 5999
#: The VM side: MTU 1500, so vnet_superframe segments at 1460 bytes of TCP data.
MSS = 1500 - 20 - 20


def checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def super_frame(dst_mac: str, dst_ip: str, seq: int, data: bytes) -> bytes:
    """An Ethernet frame holding one TCP super-frame as vnetd sends it: longer than the
    MTU, its TCP checksum field holding the pseudo-header sum (a partial checksum)."""
    src, dst = socket.inet_aton(FAKE_IP), socket.inet_aton(dst_ip)
    tcp_len = 20 + len(data)
    pseudo = checksum(src + dst + struct.pack("!BBH", 0, 6, tcp_len))
    tcp = struct.pack("!HHIIBBHHH", TCP_SPORT, TCP_DPORT, seq, 1, 5 << 4, 0x18, 65535, pseudo, 0)
    ip = wire.ipv4_header(src, dst, 6, tcp_len, df=True, ident=seq & 0xFFFF)
    eth = bytes.fromhex(dst_mac.replace(":", "") + FAKE_MAC.replace(":", "")) + b"\x08\x00"
    return eth + ip + tcp + data


def tcp_data(frames: list[bytes]) -> dict[int, bytes]:
    """The TCP data of the crafted flow in captured frames, by sequence number."""
    out = {}
    for f in frames:
        ip = f[14:]
        if f[12:14] != b"\x08\x00" or ip[9] != 6 or ip[12:16] != socket.inet_aton(FAKE_IP):
            continue
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:int.from_bytes(ip[2:4], "big")]
        if int.from_bytes(tcp[2:4], "big") != TCP_DPORT:
            continue
        out[int.from_bytes(tcp[4:8], "big")] = tcp[(tcp[12] >> 4) * 4:]
    return out


def arrived(frames: list[bytes], sent: dict[int, bytes]) -> bool:
    """Whether every byte of each super-frame sent (data by first sequence number) has
    arrived, in segments of at most MSS bytes, byte for byte."""
    got = tcp_data(frames)
    for seq, data in sent.items():
        at = 0
        while at < len(data):
            part = got.get(seq + at)
            if part is None:
                return False
            assert 0 < len(part) <= max(MSS, len(data)) and part == data[at:at + len(part)], \
                f"super-frame {seq}: segment at {at} differs ({len(part)} bytes)"
            at += len(part)
    return True


def module_host_with_vm(lab, make_hosts):
    """A module host with vnet 97 and a VM on it, and a plain host `x` on its LAN."""
    host = make_hosts(1)[0]
    sender = lab.host("x", lab.nodes["sw"], "10.0.0.66/24")
    host.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    vm = lab.vm("b", host.host, "vnet97", "10.97.0.2/24")
    return host, sender, vm


#: A packet socket on a device that asks for each frame's virtio-net header
#: (PACKET_VNET_HDR), read from the socket's own copy of the frame when it is read:
#: prints "gso_type length" per frame, after "ready".
VNET_HDR_CAPTURE = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR
s.bind((sys.argv[1], 0))
print("ready", flush=True)
while True:
    f = s.recv(70000)
    print(f[1], len(f) - 10, flush=True)
"""


def test_super_frame_cloned_by_an_underlay_capture(lab, make_hosts):
    """A packet socket on the underlay device holds a clone of every frame, sharing
    its data and shared info: marking the super-frame for segmentation must not write
    into the capture's copy (before the fix the capture read a UDP datagram as a TCP
    GSO packet), and the segments reach the VM whole."""
    host, sender, vm = module_host_with_vm(lab, make_hosts)
    # Room for super-frames in one unfragmented datagram (a fragmented one is
    # reassembled into a fresh head, no clone), built linear by the sender's stack.
    for node in (host.host, sender):
        for intf in lab.link(node.eth0).intfs:
            intf.set_mtu(9000)
    cap = lab.popen(host.host, script_argv(VNET_HDR_CAPTURE, "eth0", unbuffered=True),
                    stdout=subprocess.PIPE, text=True)
    assert cap.stdout.readline().strip() == "ready"
    seen: list[tuple[int, int]] = []
    reader = threading.Thread(target=lambda: seen.extend(tuple(map(int, line.split())) for line in cap.stdout),
                              daemon=True)
    reader.start()
    rnd = random.Random(12)
    sent = {1000 + i * 100000: rnd.randbytes(6000 + 500 * i) for i in range(4)}
    prefix = wire.vudp_prefix(VnetId.parse("97").packed)
    with Capture(lab, vm) as in_vm:
        send_datagrams(lab, sender, host.ip,
                       [prefix + super_frame(vm.mac, vm.ip, seq, data) for seq, data in sent.items()])
        in_vm.wait_for(lambda fs: arrived(fs, sent), "the super-frames' data in the VM")
    deadline = time.monotonic() + 60
    while len([n for _, n in list(seen) if n > 6000]) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.1)
    cap.terminate()
    cap.wait(10)
    big = [(gso, n) for gso, n in seen if n > 6000]
    assert len(big) == len(sent), f"the capture saw {seen}"
    assert all(gso == 0 for gso, _ in big), f"the capture's copies were changed: {big}"
    assert host.counters().get("drop:oversize", 0) == 0


#: IPv4 fragments given in hex, each sent as is (IP_HDRINCL) to argv[1].
RAW_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for h in sys.argv[2:]:
    s.sendto(bytes.fromhex(h), (sys.argv[1], 0))
"""

def xdp_pass(ifname: str) -> int:
    """Attach an XDP program that passes every packet (`mov r0, XDP_PASS; exit`) to
    `ifname`.  On a veth it makes the device copy each received packet into a page of
    its own, so the skb heads are page fragments, as most NIC drivers build them."""
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(bytes.fromhex("b700000002000000" "9500000000000000"))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(struct.pack("=IIQQ", 6, 2, ctypes.addressof(insns),
                                                   ctypes.addressof(lic)).ljust(128, b"\0"))
    fd = libc.syscall(321, 5, attr, 128)  # bpf(BPF_PROG_LOAD), BPF_PROG_TYPE_XDP
    if fd < 0:
        print(f"BPF_PROG_LOAD: errno {ctypes.get_errno()}", file=sys.stderr)
        return 1
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0],
                 xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", 4)]})  # XDP_FLAGS_DRV_MODE
    return 0


def no_fraglist(ifname: str) -> int:
    """Turn off what would let the VM's port take a GSO frame with a frag_list whole."""
    e = Ethtool()
    f = e.get_features(ifname)
    for name in ("tx-scatter-gather-fraglist", "tx-tcp-segmentation", "tx-tcp6-segmentation"):
        f.features[name].enable = False
    e.set_features(ifname, f)
    left = [n for n in ("tx-scatter-gather-fraglist", "tx-tcp-segmentation")
            if e.get_features(ifname).features[n].enable]
    if left:
        print(f"still on: {left}", file=sys.stderr)
    return 1 if left else 0


def fragments(datagram: bytes, src: str, dst: str, ident: int, cuts: list[int]) -> list[bytes]:
    """`datagram` (a UDP header and payload) as IPv4 fragments cut at `cuts`."""
    points = [0, *cuts, len(datagram)]
    out = []
    for a, b in zip(points, points[1:]):
        more = 0x2000 if b < len(datagram) else 0
        hdr = wire.ipv4_header(socket.inet_aton(src), socket.inet_aton(dst), 17, b - a, ident=ident)
        hdr = hdr[:6] + struct.pack("!H", more | a // 8) + hdr[8:10] + b"\0\0" + hdr[12:]
        out.append(hdr + datagram[a:b])
    return out


def uneven_cuts(length: int, tcp_at: int) -> list[int]:
    """Where to cut a datagram of `length` bytes whose TCP data starts at `tcp_at`: a
    fragment starts at every other segment boundary (where one is 8-byte aligned, as
    fragment offsets are) and runs past the next one (1480 bytes, more than MSS), then
    a shorter one; the first ones small and uneven, so that the reassembled datagram
    has a frag_list (its first fragments fill the head's page fragments)."""
    cuts = [8, 16, 40, 48, 120, 128, 200, 208, 400, 416, 600, 608, 800, 816, 1000, 1008, 1200, 1208, 1400]
    at = 1400
    k = 1
    while True:
        boundary = tcp_at + MSS * k
        if boundary % 8 == 0 and boundary > at:
            break
        k += 1
    while boundary < length:
        cuts += [c for c in range(at + 1480, boundary, 1480)]
        cuts.append(boundary)
        at, boundary = boundary, boundary + 2 * MSS
    cuts += [c for c in range(at + 1480, length, 1480)]
    assert all(c % 8 == 0 and 0 < c - p <= 1480 for p, c in zip([0, *cuts], cuts)), cuts
    return cuts


def test_super_frame_from_uneven_fragments_segmented_on_the_way(lab, make_hosts):
    """A super-frame whose IP fragments the sender cut unevenly (and sends out of order)
    is reassembled into a frag_list the sender chose; the VM's port takes no frag_list
    and no TSO, so the frame is segmented again in software after the module: before
    the fix that could reach the BUG_ON in skb_segment (frag_list heads that are page
    fragments, longer than the segment size).  No BUG, and the data arrives."""
    host, sender, vm = module_host_with_vm(lab, make_hosts)
    # Forks of this process, not new Pythons (seconds each in the guest).
    for func, ifname in ((no_fraglist, vm.port), (xdp_pass, "eth0")):
        code, _, err = run_in_namespace(lab.ns_of(host.host), func, ifname)
        assert code == 0, err
    lab.wait_ping(sender, host.ip, timeout=20)  # ARP done: the fragments go out at once
    rnd = random.Random(13)
    prefix = wire.vudp_prefix(VnetId.parse("97").packed)
    sent = {}
    for i in range(3):
        seq, data = 5000 + i * 100000, rnd.randbytes(40000 + 1000 * i)
        sent[seq] = data
        payload = prefix + super_frame(vm.mac, vm.ip, seq, data)
        datagram = wire.udp_header(len(payload), sport=40000) + payload
        tcp_at = 8 + len(prefix) + 14 + 20 + 20
        frags = fragments(datagram, sender.ip, host.ip, 0x4000 + i, uneven_cuts(len(datagram), tcp_at))
        rnd.shuffle(frags)
        with Capture(lab, vm) as in_vm:
            r = lab.run(sender, script_argv(RAW_SEND, host.ip, *(f.hex() for f in frags)))
            assert r.returncode == 0, r.stderr
            in_vm.wait_for(lambda fs, one={seq: data}: arrived(fs, one), f"super-frame {i}'s data in the VM")
    counters = host.counters()
    assert counters.get("drop:oversize", 0) == 0 and counters.get("drop:no-memory", 0) == 0, counters
    assert host.vn_json("vnets")[0]["rx_packets"] >= 3
