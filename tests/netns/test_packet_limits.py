"""Frames and datagrams at the edges of what fits: a full-size 802.1Q frame, and a
multicast too long to relay to a peer.  Written for both datapaths (the module's
guest imports them: tests/kernel/in_guest/test_kmod_packets.py)."""
from __future__ import annotations

import socket
import subprocess

import pytest
from conftest import EXAMPLES, needs_root

from lab.capture import Capture
from lab.ping import parse_ping
from lab.traffic import send_udp
from lab.procs import script_argv
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

pytestmark = [needs_root, pytest.mark.root]


def test_full_size_vlan_frames_cross_hosts(lab, make_hosts):
    full_size_vlan_frames_cross_hosts(lab, make_hosts)


def full_size_vlan_frames_cross_hosts(lab, make_hosts, datapath: str | None = None):
    """A VM's 802.1Q subinterface on a 1500-byte vnet sends 1518-byte frames (the
    bridge forwards a tag beyond the MTU): every datapath receives them whole.
    Skipped where the kernel has no 802.1Q devices (this machine's own kernel; the
    module's guest has them and runs it on both datapaths)."""
    hosts = make_hosts(2, datapath=datapath)
    for h in hosts:
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    vms = [lab.vm(f"q{i}", h.host, "vnet97", f"10.97.0.{i + 1}/24") for i, h in enumerate(hosts)]
    for i, vm in enumerate(vms):
        cp = lab.run(vm, ["ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10"])
        if "Unknown device type" in cp.stderr:
            pytest.skip("this kernel has no 802.1Q devices (8021q)")
        assert cp.returncode == 0, cp.stderr
        lab.run(vm, ["ip", "addr", "add", f"10.10.0.{i + 1}/24", "dev", "eth0.10"], check=True)
        lab.run(vm, ["ip", "link", "set", "eth0.10", "up"], check=True)
    assert all(vm.eth0.mtu == 1500 for vm in vms)  # the vnet's MTU
    lab.wait_ping(vms[0], "10.10.0.2", timeout=20)
    before = [h.counters() for h in hosts]
    # 1472 bytes of ICMP data: a 1500-byte IP packet, 1518 bytes with the tag.
    for src, dst in ((vms[0], "10.10.0.2"), (vms[1], "10.10.0.1")):
        cp = lab.run(src, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-w", "15", "-s", "1472",
                           "-M", "do", dst], timeout=20)
        r = parse_ping(cp.stdout + cp.stderr, 3)
        assert r.received == 3 and r.duplicates == 0, r.output
    # Full-size UDP too, whose checksum the VM's stack leaves to offload.
    sink = lab.popen(vms[1], script_argv(UDP_COUNT, "10.10.0.2", "3"), stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    send_udp(lab, vms[0], "10.10.0.2", bytes(range(256)) * 5 + bytes(1472 - 1280), count=3)
    assert sink.stdout.readline().split() == ["3", "1472"], "full-size UDP over the VLAN did not arrive"
    sink.wait(10)
    after = [h.counters() for h in hosts]
    for b, a in zip(before, after):
        assert a.get("drop:oversize", 0) == b.get("drop:oversize", 0), (b, a)


#: Counts the datagrams arriving at UDP port 7 of argv[1] until argv[2] have, and
#: prints that count and the longest length.
UDP_COUNT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7))
s.settimeout(60)
print("ready", flush=True)
sizes = [len(s.recv(65535)) for _ in range(int(sys.argv[2]))]
print(len(sizes), max(sizes), flush=True)
"""


#: A message padded with zeros to each size given, sent in order to the group from
#: the node's address.
GROUP_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 8)
for size in sys.argv[4:]:
    s.sendto(bytes.fromhex(sys.argv[3]).ljust(int(size), b"\0"), (sys.argv[2], 1798))
"""

#: The longest UDP payload a VFWD to a peer can carry: the outer datagram (IPv4, UDP,
#: the VFWD header, the inner IPv4 and UDP headers) must fit in 65,535 bytes.
VFWD_MAX_UDP_PAYLOAD = 65535 - 2 * (wire.IPV4_HEADER_LEN + wire.UDP_HEADER_LEN) - len(wire.VFWD_HEADER)


def datagrams(frames: list[bytes], src: str, dst: str) -> list[bytes]:
    """The IPv4 datagrams from `src` to `dst` in captured Ethernet frames, reassembled
    from their fragments by IP id, headers included as the first fragment had them;
    a datagram whose fragments run beyond 65,535 bytes is returned as it came, too
    long, for the caller to see."""
    parts: dict[int, list[tuple[int, bytes, bytes]]] = {}
    for f in frames:
        ip = f[14:]
        if f[12:14] != b"\x08\x00" or ip[12:16] != socket.inet_aton(src) or ip[16:20] != socket.inet_aton(dst):
            continue
        ihl = (ip[0] & 15) * 4
        frag = int.from_bytes(ip[6:8], "big")
        body = ip[ihl:int.from_bytes(ip[2:4], "big")]
        parts.setdefault(int.from_bytes(ip[4:6], "big"), []).append(((frag & 0x1FFF) * 8, ip[:ihl], body))
    out = []
    for pieces in parts.values():
        pieces.sort(key=lambda p: p[0])
        if pieces[0][0] != 0:
            continue
        data = bytearray()
        for offset, _hdr, body in pieces:
            data[offset:offset + len(body)] = body
        out.append(pieces[0][1] + bytes(data))
    return out


def test_multicast_too_long_for_a_vfwd_is_dropped_and_counted(lab, make_hosts):
    """A multicast the group carries but a VFWD cannot (its 16-bit lengths would wrap)
    is not relayed to the peers, and counted; the longest one that fits still is."""
    sw1, sw2 = lab.switch("s1"), lab.switch("s2")
    lab.router("r", [(sw1, "10.0.1.254/24"), (sw2, "10.0.2.254/24")])
    left = make_hosts(1, switch=sw1, subnet="10.0.1", gateway="10.0.1.254")[0]
    right = make_hosts(1, switch=sw2, subnet="10.0.2", gateway="10.0.2.254")[0]
    sender = lab.host("x", sw1, "10.0.1.66/24", gateway="10.0.1.254")
    for h in (left, right):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    left.vn("peer-add", right.ip)
    right.vn("peer-add", left.ip)
    # A frame of a vnet no host has: handled (and dropped) wherever it arrives.
    message = wire.vudp_prefix(VnetId.parse("1234").packed) + bytes.fromhex("ffffffffffff" "aa0000000001" "0800")
    sizes = [VFWD_MAX_UDP_PAYLOAD + 5, VFWD_MAX_UDP_PAYLOAD + 1, VFWD_MAX_UDP_PAYLOAD]
    before_left, before_right = left.counters(), right.counters()
    with Capture(lab, sw2) as cap:
        # One datagram at a time, sent again if the underlay lost it (each is about 45
        # IP fragments, and a busy test guest drops some): what is checked is what
        # the host counts of each one that arrives.
        got = before_left
        for size in sizes:
            # Each oversize one is a drop; the one that fits, one more datagram.
            sign = {"drop:oversize": 1} if size > VFWD_MAX_UDP_PAYLOAD else {"udp-received": 1}
            for _attempt in range(5):
                r = lab.run(sender, script_argv(GROUP_SEND, sender.ip, wire.DEFAULT_GROUP, message.hex(), str(size)))
                assert r.returncode == 0, r.stderr
                try:
                    got = left.wait_counters(got, sign, timeout=20)
                    break
                except AssertionError:
                    continue
            else:
                raise AssertionError(f"a {size}-byte datagram to the group never reached {left.name}")
        after_left = got
        after_right = right.wait_counters(before_right, {"forwards-received": 1})
        relayed = cap.wait_for(lambda fs: datagrams(fs, left.ip, right.ip), "the VFWD datagram at the peer")
    assert after_left["drop:oversize"] - before_left.get("drop:oversize", 0) == 2, after_left
    assert after_left.get("drop:send-error", 0) == before_left.get("drop:send-error", 0), after_left
    assert after_right["forwards-received"] - before_right.get("forwards-received", 0) == 1, after_right
    # What crossed to the peer is well formed: lengths that add up, and only the one that fits.
    vfwds = []
    for ip in datagrams(relayed, left.ip, right.ip):
        ihl = (ip[0] & 15) * 4
        assert len(ip) <= 65535, f"malformed: {len(ip)} bytes"
        assert ip[9] == 17 and int.from_bytes(ip[ihl + 4:ihl + 6], "big") == len(ip) - ihl, "UDP length"
        vfwds.append(ip[ihl + 8:])
    assert [len(v) for v in vfwds] == [65535 - 28], [len(v) for v in vfwds]
    inner = vfwds[0][len(wire.VFWD_HEADER):]
    assert int.from_bytes(inner[2:4], "big") == len(inner), "inner IPv4 length"
    assert inner[28:28 + len(message)] == message
