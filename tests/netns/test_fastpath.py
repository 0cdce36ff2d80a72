"""vnetd's fast path (the tc/eBPF programs of bpf/, issue 18) on the host kernel:
namespaces as hosts on a veth underlay, vnetd with its fast path on unless a test
turns it off.  What the other vnetd scenario tests cannot see, since they pass the
same with the fast path on or off: which frames took it (the per-vnet `fast_*`
counters of `vn vnets --json`), that its packets are the bytes vnetd sends, that it
interoperates with a vnetd without it, that vnetd falls back and says so, that its
maps follow a moved VM, and that its tc filters are neither left twice nor left
behind, nor take anyone else's away, nor keep the filters after them from running.

Needs root; every lab is torn down even when a test fails.  The scenarios the issue
lists that need nothing specific to the fast path (peers across a router, looping
peers, vnets on different subnets, the plain malformed-packet and kill -9 checks)
run with the fast path on in tests/netns/test_vnetd_net.py."""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EXAMPLES, needs_root

from lab.capture import Capture
from lab.lab import VM, Host, Lab, NodeRef
from lab.ping import PingResult, parse_ping, ping_argv
from lab.procs import script_argv
from lab.traffic import send_datagrams, transfer
from lab.vnethost import VnetHost
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

pytestmark = [needs_root, pytest.mark.root]

MB10 = 10 << 20
VID97 = VnetId.parse("97")
#: What `vn vnets --json` says of a vnet only while vnetd has a fast path.
FAST_FIELDS = ("fast_rx_packets", "fast_tx_packets", "fast_rx_bytes", "fast_tx_bytes")
#: Our tc filters' handle (vnet/datapath/fastpath/fastpath.py, TC_HANDLE) as tc prints it.
OUR_FILTER = "handle 0x1798 "

#: `count` (argv[2]) UDP datagrams to argv[1] (the limited broadcast too: out of
#: eth0, no route needed) port 9.
DATAGRAMS = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
for _ in range(int(sys.argv[2])):
    s.sendto(b"a flood", (sys.argv[1], 9))
"""


def record(h: VnetHost, vnet: str = "97") -> dict:
    """The `vn vnets --json` record of one vnet on a host."""
    wanted = str(VnetId.parse(vnet))
    for r in h.vn_json("vnets"):
        if r["id"] == wanted:
            return r
    raise AssertionError(f"{h.name} has no vnet {vnet}")


def grown(before: dict, after: dict) -> dict[str, int]:
    """How much each packet and byte count of a vnet record grew."""
    return {k: v - before.get(k, 0) for k, v in after.items()
            if isinstance(v, int) and k.endswith(("_packets", "_bytes"))}


def ping_size(lab: Lab, node: NodeRef, address: str, size: int, count: int = 3) -> PingResult:
    """`count` pings with `size` bytes of ICMP payload, which may be fragmented on the
    way (-M dont: the VM sends the frame whole, what happens to it is the test's)."""
    argv = ping_argv(address, count, 0.2, 10)
    argv[-1:-1] = ["-s", str(size), "-M", "dont"]
    cp = lab.run(node, argv, timeout=15)
    return parse_ping(cp.stdout + cp.stderr, count)


def filters(lab: Lab, h: VnetHost, dev: str, kind: str) -> str:
    """What tc says of the filters on `dev`'s `kind` (ingress, egress) in a host's namespace."""
    return lab.run(h.host, ["tc", "filter", "show", "dev", dev, kind], check=True).stdout


def ours(listing: str) -> int:
    """How many of our filters a listing of `filters` holds."""
    return listing.count(OUR_FILTER)


def qdiscs(lab: Lab, h: VnetHost, dev: str) -> str:
    """What tc says of `dev`'s qdiscs (is there a clsact?) in a host's namespace."""
    return lab.run(h.host, ["tc", "qdisc", "show", "dev", dev], check=True).stdout


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait for `cond` to hold, polling; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(0.1)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


# ---- two fast-path hosts shared by the counter, isolation, MTU and drop checks ----


@dataclass
class Pair:
    """Hosts h1 and h2 (fast path on) and an attacker host x on one switch; vnet 97
    (VMs a on h1, b on h2), vnet 98 a twin of it (VMs x1, x2: the same MACs and
    addresses as a and b, only the vnet differs), vnet 99 secure (VMs s1, s2)."""
    lab: Lab
    h1: VnetHost
    h2: VnetHost
    attacker: Host
    vms: dict[str, VM]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("fastpath")
    # Its own prefix (still ending in our pid, for cleanup_stale): the other tests'
    # labs are built while this one stands.
    with Lab(prefix=f"vlfp{os.getpid()}") as lab:
        sw = lab.switch("sw")
        hosts = []
        for i in (1, 2):
            h = VnetHost(lab, lab.host(f"h{i}", sw, f"10.0.0.{i}/24"), tmp / f"h{i}", datapath="vnetd")
            h.start()
            hosts.append(h)
        h1, h2 = hosts
        key = tmp / "99.key"
        h1.vn("key-gen", str(key))
        for h in hosts:
            h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
            h.vn("vnet-create", "98")
            h.vn("vnet-create", "-s", "auth", "-k", str(key), "99")
        vms = {"a": lab.vm("a", h1.host, "vnet97", "10.97.0.1/24"),
               "b": lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")}
        vms["x1"] = lab.vm("x1", h1.host, "vnet98", "10.97.0.1/24", mac=vms["a"].mac)
        vms["x2"] = lab.vm("x2", h2.host, "vnet98", "10.97.0.2/24", mac=vms["b"].mac)
        vms["s1"] = lab.vm("s1", h1.host, "vnet99", "10.99.0.1/24")
        vms["s2"] = lab.vm("s2", h2.host, "vnet99", "10.99.0.2/24")
        for src, dst in (("a", "b"), ("x1", "x2"), ("s1", "s2")):
            r = lab.ping(vms[src], vms[dst].ip, count=2)
            assert r.received == 2, r.output
        yield Pair(lab, h1, h2, lab.host("x", sw, "10.0.0.66/24"), vms)


def test_tcp_between_known_macs_takes_the_fast_path(pair: Pair) -> None:
    """10 MB of TCP arrive intact, and nearly every frame of it (data one way, ACKs
    the other) went through the programs on both hosts."""
    lab, h1, h2, vms = pair.lab, pair.h1, pair.h2, pair.vms
    before = [record(h1), record(h2)]
    transfer(lab, vms["a"], vms["b"], "tcp", MB10)
    after = [record(h1), record(h2)]
    for h, r in zip((h1, h2), after):
        assert r["path"] == "fast" and "path_reason" not in r, (h.name, r)
    sent, got = grown(before[0], after[0]), grown(before[1], after[1])
    assert sent["fast_tx_packets"] >= 0.9 * sent["tx_packets"] > 0, sent
    assert sent["fast_tx_bytes"] >= MB10, sent
    assert got["fast_rx_packets"] >= 0.9 * got["rx_packets"] > 0, got
    assert got["fast_rx_bytes"] >= MB10, got
    # The ACKs, the other way.
    assert sent["fast_rx_packets"] >= 0.9 * sent["rx_packets"] > 0, sent
    assert got["fast_tx_packets"] >= 0.9 * got["tx_packets"] > 0, got


def test_floods_and_varp_take_the_slow_path(pair: Pair) -> None:
    """A new VM's broadcasts, its unicast to an unknown MAC and the announce of its MAC go
    through vnetd on both hosts (flooded, received by its socket); the programs
    count none of them, and the frames still reach the other host's vnet."""
    lab, h1, h2 = pair.lab, pair.h1, pair.h2
    before = [h1.counters(), h2.counters(), record(h1), record(h2)]
    c = lab.vm("c", h2.host, "vnet97", "10.97.0.3/24")
    n = 10
    r = lab.run(c, script_argv(DATAGRAMS, "255.255.255.255", str(n)))
    assert r.returncode == 0, r.stderr
    # Unicast IPv4 to a MAC no host has: an unknown destination.
    lab.run(c, ["ip", "neigh", "add", "10.97.0.77", "lladdr", "02:00:00:00:0a:99", "dev", "eth0"], check=True)
    r = lab.run(c, script_argv(DATAGRAMS, "10.97.0.77", "3"))
    assert r.returncode == 0, r.stderr
    h2.wait_counters(before[1], {"floods": n + 3, "unknown-unicast-floods": 3, "announces-sent": 1})
    h1.wait_counters(before[0], {"udp-received": n + 3 + 1, "announces-received": 1})
    sent, got = grown(before[3], record(h2)), grown(before[2], record(h1))
    assert sent["fast_tx_packets"] == 0 and sent["tx_packets"] >= n + 3, sent
    assert got["fast_rx_packets"] == 0 and got["rx_packets"] >= n + 3, got
    assert pair.h1.varp_table("97")[c.mac] == h2.ip


def test_secure_vnet_is_slow_and_works(pair: Pair) -> None:
    lab, h1, h2, vms = pair.lab, pair.h1, pair.h2, pair.vms
    before = [record(h1, "99"), record(h2, "99")]
    r = lab.ping(vms["s1"], vms["s2"].ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output
    transfer(lab, vms["s2"], vms["s1"], "tcp", 1 << 20)
    for h, b in zip((h1, h2), before):
        rec = record(h, "99")
        assert rec["path"] == "slow" and "secure" in rec["path_reason"], (h.name, rec)
        g = grown(b, rec)
        assert g["rx_packets"] > 0 and g["tx_packets"] > 0, g
        assert all(rec[f] == 0 for f in FAST_FIELDS), (h.name, rec)


def test_twin_vnets_stay_apart(pair: Pair) -> None:
    """Vnets 97 and 98 hold VMs with the same MACs and addresses on the same hosts:
    only the vnet id in the packets tells them apart, and the maps are keyed by it.
    Traffic on one vnet moves only that vnet's fast counters; a VM of 98 alone is
    out of reach from 97."""
    lab, h1, h2, vms = pair.lab, pair.h1, pair.h2, pair.vms
    for src, dst, on, off in (("a", "b", "97", "98"), ("x2", "x1", "98", "97")):
        before = {(h.name, v): record(h, v) for h in (h1, h2) for v in (on, off)}
        r = lab.ping(vms[src], vms[dst].ip, count=5)
        assert r.received == 5 and r.duplicates == 0, r.output
        for h in (h1, h2):
            g_on = grown(before[h.name, on], record(h, on))
            g_off = grown(before[h.name, off], record(h, off))
            assert g_on["fast_rx_packets"] >= 5 and g_on["fast_tx_packets"] >= 5, (h.name, on, g_on)
            assert g_off["fast_rx_packets"] == 0 and g_off["fast_tx_packets"] == 0, (h.name, off, g_off)
    lone = lab.vm("z", h2.host, "vnet98", "10.97.0.9/24")
    assert lab.ping(vms["a"], lone.ip, count=1, timeout=2).received == 0
    assert lab.ping(lone, vms["x1"].ip, count=2).received == 2


def test_mtu_whole_frames_fast_fragmented_ones_slow(pair: Pair) -> None:
    """Underlay and vnet MTU 1500: a 1400-byte ping still fits the underlay once
    encapsulated and takes the fast path; a 1472-byte one (a 1514-byte frame) would
    need IP fragments, which a redirected packet never gets, so vnetd carries it and
    the host fragments it."""
    lab, h1, h2, vms = pair.lab, pair.h1, pair.h2, pair.vms
    assert record(h1)["path"] == "fast"
    before = [record(h1), record(h2)]
    r = ping_size(lab, vms["a"], vms["b"].ip, 1400)
    assert r.received == 3, r.output
    g1, g2 = grown(before[0], record(h1)), grown(before[1], record(h2))
    assert g1["fast_tx_packets"] >= 3 and g1["fast_rx_packets"] >= 3, g1
    assert g2["fast_tx_packets"] >= 3 and g2["fast_rx_packets"] >= 3, g2
    before = [record(h1), record(h2)]
    r = ping_size(lab, vms["a"], vms["b"].ip, 1472)
    assert r.received == 3 and r.duplicates == 0, r.output
    g1, g2 = grown(before[0], record(h1)), grown(before[1], record(h2))
    for g in (g1, g2):
        assert g["fast_tx_packets"] == 0 and g["fast_rx_packets"] == 0, g
        assert g["tx_packets"] >= 3 and g["rx_packets"] >= 3, g


def test_malformed_packets_are_left_to_vnetd(pair: Pair) -> None:
    """Malformed VUDP for the served vnet, sent from the host the inner source MAC
    is known at (so only the check for what is wrong keeps the programs from taking
    it), and from a stranger: each ends as vnetd's drop reason, none reaches b."""
    lab, h1, h2, vms = pair.lab, pair.h1, pair.h2, pair.vms
    a, b, s1, s2 = vms["a"], vms["b"], vms["s1"], vms["s2"]
    frame = mac_bytes(b.mac) + mac_bytes(a.mac) + b"\x08\x00" + bytes(46)
    secure_frame = mac_bytes(s2.mac) + mac_bytes(s1.mac) + b"\x08\x00" + bytes(46)
    bad = {
        "bad-version": [wire.VUDP_HEADER + b"\x00\x30" + VID97.packed + frame],
        "unknown-vnet": [wire.vudp_prefix(VnetId.parse("1234").packed) + frame],
        "short": [wire.vudp_prefix(VID97.packed) + frame[:10]],
        "unprotected": [wire.vudp_prefix(VnetId.parse("99").packed) + secure_frame],
    }
    payloads = [p for ps in bad.values() for p in ps]
    for sender in (h1.host, pair.attacker):
        before, rec = h2.counters(), record(h2)
        send_datagrams(lab, sender, h2.ip, payloads)
        after = h2.wait_counters(before, {"drop:" + k: len(v) for k, v in bad.items()})
        for reason, ps in bad.items():
            assert after.get("drop:" + reason, 0) - before.get("drop:" + reason, 0) == len(ps), (reason, after)
        g = grown(rec, record(h2))
        assert g["fast_rx_packets"] == 0 and g["rx_packets"] == 0, g
    r = lab.ping(a, b.ip, count=2)
    assert r.received == 2, r.output


def test_a_udp_checksum_sends_the_packet_to_vnetd(pair: Pair) -> None:
    """Every vnet host sends UDP checksum 0.  A well-formed frame to b from the host a
    is known at, with a checksum, is delivered by vnetd (whose socket has the kernel
    verify it), not by the fast path, which would not; with checksum 0 the fast path
    takes the same frame."""
    lab, h1, h2, vms = pair.lab, pair.h1, pair.h2, pair.vms
    a, b = vms["a"], vms["b"]
    lab.ping(a, b.ip, count=1)  # a's and b's MACs known at both hosts
    frame = mac_bytes(b.mac) + mac_bytes(a.mac) + b"\x08\x00" + bytes(46)
    for checksum, path in ((True, "rx_packets"), (False, "fast_rx_packets")):
        rec = record(h2)
        send_datagrams(lab, h1.host, h2.ip, [wire.vudp_prefix(VID97.packed) + frame] * 3, checksum=checksum)
        wait_until(f"3 frames on h2's {path}", lambda: grown(rec, record(h2))[path] >= 3)
        g = grown(rec, record(h2))
        if checksum:
            assert g["fast_rx_packets"] == 0, g


# ---- mixed hosts -------------------------------------------------------------------

#: TCP over IPv6, as lab.traffic.transfer over IPv4: the sink (argv[1] its address)
#: says "ready", then the byte count and SHA-256 of what arrived.
SINK6 = r"""
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5006))
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""
SOURCE6 = r"""
import hashlib, random, socket, sys
data = random.Random(6).randbytes(int(sys.argv[2]))
s = socket.create_connection((sys.argv[1], 5006))
s.sendall(data); s.close()
print(len(data), hashlib.sha256(data).hexdigest())
"""


def transfer6(lab: Lab, src: VM, dst: VM, dst_addr: str, amount: int) -> None:
    """`amount` bytes of TCP over IPv6 from `src` to `dst_addr` on `dst`, checked as
    lab.traffic.transfer checks IPv4: what arrived is what was sent."""
    sink = lab.popen(dst, script_argv(SINK6, dst_addr), stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    sent = lab.run(src, script_argv(SOURCE6, dst_addr, str(amount)), timeout=60)
    assert sent.returncode == 0, sent.stderr
    got = sink.stdout.readline().strip()
    sink.wait(10)
    assert got == sent.stdout.strip(), f"tcp6: sent {sent.stdout.strip()} received {got}"



def vudp_packets(frames: list[bytes], src: str, dst: str, inner_type: int) -> list[tuple[bytes, bytes]]:
    """(IPv4 header, UDP datagram) of the packets from `src` to `dst` carrying an
    inner IPv4 ICMP message of `inner_type` (0 reply, 8 request) in vnet 97."""
    out = []
    for f in frames:
        if f[12:14] != b"\x08\x00" or f[14 + 9] != 17:
            continue
        ip = f[14:14 + 20]
        if socket.inet_ntoa(ip[12:16]) != src or socket.inet_ntoa(ip[16:20]) != dst:
            continue
        udp = f[14 + 20:14 + int.from_bytes(ip[2:4], "big")]
        inner = udp[8 + 22:]
        if (udp[8:30] == wire.vudp_prefix(VID97.packed) and inner[12:14] == b"\x08\x00"
                and inner[14 + 9] == 1 and inner[14 + (inner[14] & 15) * 4] == inner_type):
            out.append((ip, udp))
    return out


def check_vudp(ip: bytes, udp: bytes, who: str) -> bytes:
    """The outer packet is as every vnet host sends it; returns the VUDP payload."""
    assert ip[0] == 0x45, f"{who}: IPv4 with options: {ip.hex()}"
    flags = int.from_bytes(ip[6:8], "big")
    assert flags & 0x4000 == 0, f"{who}: DF set: {ip.hex()}"
    assert flags & 0x3FFF == 0, f"{who}: a fragment: {ip.hex()}"
    assert ip[8] == 64, f"{who}: TTL {ip[8]}"
    sport, dport, length, check = struct.unpack("!HHHH", udp[:8])
    assert (sport, dport) == (wire.PORT, wire.PORT), f"{who}: ports {sport} -> {dport}"
    assert length == len(udp), f"{who}: UDP length {length} of {len(udp)} bytes"
    assert check == 0, f"{who}: UDP checksum {check:#x} (doc/wire-format.md: 0)"
    payload = udp[8:]
    assert payload[:6] == bytes.fromhex("000200000040"), f"{who}: {payload[:22].hex()}"
    assert payload[6:22] == VID97.packed, f"{who}: {payload[:22].hex()}"
    return payload


def test_mixed_hosts_interoperate(lab, make_hosts) -> None:
    """Fast path, plain vnetd (--no-fastpath), fast path: every pair pings, 10 MB of
    TCP crosses between a fast-path host and the plain one both ways byte for byte
    (the ACKs of one and the data of the other leave the fast path with inner
    checksums it completed: a veth underlay completes none), and the packets of the
    fast path are laid out as vnetd's."""
    h1, h2, h3 = make_hosts(3, start=False, datapath="vnetd")
    h1.start()
    h2.start("--no-fastpath")
    h3.start()
    for h in (h1, h2, h3):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    c = lab.vm("c", h3.host, "vnet97", "10.97.0.3/24")
    plain = record(h2)
    assert plain["path"] == "slow" and "--no-fastpath" in plain["path_reason"], plain
    assert not set(FAST_FIELDS) & set(plain), plain
    with Capture(lab, lab.nodes["sw"]) as cap:
        for src in (a, b, c):
            for dst in (a, b, c):
                if src is not dst:
                    r = lab.ping(src, dst.ip, count=2)
                    assert r.received == 2 and r.duplicates == 0, (src.name, dst.name, r.output)
        before = record(h1)
        r = lab.ping(a, b.ip, count=3)
        assert r.received == 3, r.output
        assert grown(before, record(h1))["fast_tx_packets"] >= 3, "a's requests did not take the fast path"
        frames = cap.wait_for(lambda fs: vudp_packets(fs, h1.ip, h2.ip, 8) and vudp_packets(fs, h2.ip, h1.ip, 0),
                              "a ping request from h1 and its reply from h2")
    fast_ip, fast_udp = vudp_packets(frames, h1.ip, h2.ip, 8)[-1]
    slow_ip, slow_udp = vudp_packets(frames, h2.ip, h1.ip, 0)[-1]
    fast = check_vudp(fast_ip, fast_udp, "fast path")
    slow = check_vudp(slow_ip, slow_udp, "vnetd")
    assert len(fast) == len(slow), (fast.hex(), slow.hex())
    assert fast[22:34] == mac_bytes(b.mac) + mac_bytes(a.mac), fast[22:34].hex()
    assert slow[22:34] == mac_bytes(a.mac) + mac_bytes(b.mac), slow[22:34].hex()
    before = [record(h1), record(h2)]
    transfer(lab, a, b, "tcp", MB10)
    transfer(lab, b, a, "tcp", MB10)
    g1 = grown(before[0], record(h1))
    assert g1["fast_tx_bytes"] >= MB10 and g1["fast_rx_packets"] > 0, g1
    # The same over IPv6, whose checksums cover another pseudo-header.
    for vm, addr in ((a, "fd97::1/64"), (b, "fd97::2/64")):
        lab.run(vm, ["ip", "-6", "addr", "add", addr, "dev", "eth0", "nodad"], check=True)
    before = record(h1)
    transfer6(lab, a, b, "fd97::2", MB10)
    transfer6(lab, b, a, "fd97::1", MB10)
    g1 = grown(before, record(h1))
    assert g1["fast_tx_bytes"] >= MB10 and g1["fast_rx_packets"] > 0, g1
    assert record(h2)["path"] == "slow"


# ---- fallback ----------------------------------------------------------------------

#: Root without what BPF needs (CAP_BPF, or CAP_SYS_ADMIN; CAP_PERFMON for some
#: helpers), as in a container that lacks them; vnetd keeps what it needs itself.
NO_BPF = ["setpriv", "--inh-caps=-bpf,-sys_admin,-perfmon", "--bounding-set=-bpf,-sys_admin,-perfmon"]


def test_fallback_says_why_and_carries_everything(lab, make_hosts) -> None:
    """Three ways to be without the fast path: the probe made to fail
    (VNET_FASTPATH_REFUSE), turned off (--no-fastpath), and the kernel refusing BPF
    to a vnetd without the capabilities.  Each says so in `vn vnets`, leaves no
    filter on the underlay, and carries pings and TCP between the three."""
    h1, h2, h3 = make_hosts(3, start=False, datapath="vnetd")
    h1.start(env={"VNET_FASTPATH_REFUSE": "refused by the test"})
    h2.start("--no-fastpath")
    try:
        h3.start(wrapper=NO_BPF)
    except RuntimeError as e:
        pytest.skip(f"vnetd does not run under {' '.join(NO_BPF)}: {e}")
    hosts = (h1, h2, h3)
    for h in hosts:
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    reasons = {h1.name: "refused by the test", h2.name: "--no-fastpath", h3.name: "not permitted"}
    for h in hosts:
        rec = record(h)
        assert rec["path"] == "slow" and reasons[h.name] in rec["path_reason"], (h.name, rec)
        assert not set(FAST_FIELDS) & set(rec), (h.name, rec)
        assert ours(filters(lab, h, "eth0", "ingress")) == 0, h.name
        log = h.log.read_text()
        assert "fast path on" not in log, (h.name, log)
    for h in (h1, h3):
        lines = [x for x in h.log.read_text().splitlines() if "fast path off" in x]
        assert len(lines) == 1 and reasons[h.name] in lines[0], (h.name, lines)
    vms = [lab.vm(f"m{i}", h.host, "vnet97", f"10.97.0.{i}/24") for i, h in enumerate(hosts, 1)]
    for src in vms:
        for dst in vms:
            if src is not dst:
                r = lab.ping(src, dst.ip, count=2)
                assert r.received == 2 and r.duplicates == 0, (src.name, dst.name, r.output)
    transfer(lab, vms[0], vms[2], "tcp", MB10)
    transfer(lab, vms[2], vms[1], "tcp", MB10)
    for h in hosts:
        assert ours(filters(lab, h, "vnif97", "egress")) == 0, h.name


# ---- a moved VM --------------------------------------------------------------------


def test_moved_vm_is_served_at_its_new_host(lab, make_hosts) -> None:
    """VM m moves from h1 to h2 (same MAC): a client on h3 reaches it there within a
    deadline, h1 no longer holds it as local and sends its own VM's frames for it to
    h2, and the fast counters grow at h2, not h1."""
    h1, h2, h3 = make_hosts(3, datapath="vnetd")
    for h in (h1, h2, h3):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    m = lab.vm("m", h1.host, "vnet97", "10.97.0.1/24")
    o = lab.vm("o", h1.host, "vnet97", "10.97.0.4/24")
    c = lab.vm("c", h3.host, "vnet97", "10.97.0.3/24")
    before = record(h1)
    assert lab.ping(c, m.ip, count=3).received == 3
    assert grown(before, record(h1))["fast_rx_packets"] >= 2
    assert lab.ping(o, m.ip, count=2).received == 2  # o learns m's MAC as a neighbour of its bridge
    lab.move_vm(m, h2.host, "vnet97")
    lab.wait_ping(c, m.ip, timeout=10)
    assert h3.varp_table("97")[m.mac] == h2.ip
    # h1 heard m's announce from h2 as h3 did, but on its own socket, in its own time.
    wait_until("h1 to learn m at h2", lambda: h1.varp_table("97").get(m.mac) == h2.ip)
    assert m.mac not in h1.vif_macs(), "the old host still holds the moved MAC as local"
    before = [record(h) for h in (h1, h2, h3)]
    r = lab.ping(c, m.ip, count=5)
    assert r.received == 5 and r.duplicates == 0, r.output
    g1, g2, g3 = (grown(b, record(h)) for b, h in zip(before, (h1, h2, h3)))
    assert g2["fast_rx_packets"] >= 5 and g2["fast_tx_packets"] >= 5, g2
    assert g3["fast_tx_packets"] >= 5 and g3["fast_rx_packets"] >= 5, g3
    assert g1["fast_rx_packets"] == 0 and g1["fast_tx_packets"] == 0, g1
    before = [record(h1), record(h2)]
    r = lab.ping(o, m.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output
    g1, g2 = grown(before[0], record(h1)), grown(before[1], record(h2))
    assert g1["fast_tx_packets"] >= 3 and g2["fast_rx_packets"] >= 3, (g1, g2)


# ---- the filters: kill -9, restart, clean stop, someone else's filter ---------------


def test_filters_after_kill_restart_and_stop(lab, make_hosts) -> None:
    """h1's underlay has someone else's filter before vnetd starts; h2's and h3's
    have none.  After a kill -9 and restart of h2's vnetd traffic takes the fast path
    again and each device holds exactly one filter of ours.  A clean stop removes
    ours and leaves the other one, with its qdisc; the clsact qdisc vnetd made on
    h3 goes too (on h2 the restarted vnetd found it made, so it stays: by design,
    only the vnetd that made it removes it)."""
    h1, h2, h3 = make_hosts(3, start=False, datapath="vnetd")
    # Matching nothing we send (IP protocol 253), ahead of ours: a u32 filter ends
    # the classification of what it matches.  (u32 without an action: a kernel
    # without modules may have no other classifier or action.)
    lab.run(h1.host, ["tc", "qdisc", "add", "dev", "eth0", "clsact"], check=True)
    lab.run(h1.host, ["tc", "filter", "add", "dev", "eth0", "ingress", "pref", "100", "protocol", "ip",
                      "u32", "match", "ip", "protocol", "253", "0xff"], check=True)
    foreign = filters(lab, h1, "eth0", "ingress")
    assert "pref 100 u32" in foreign and ours(foreign) == 0, foreign
    for h in (h1, h2, h3):
        h.start()
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    lab.vm("c", h3.host, "vnet97", "10.97.0.3/24")
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    assert lab.ping(a, b.ip, count=2).received == 2
    listing = filters(lab, h1, "eth0", "ingress")
    assert foreign.strip() in listing and ours(listing) == 1, listing
    h2.kill(signal.SIGKILL)
    h2.start()
    lab.wait_ping(a, b.ip, timeout=30)
    for dev, kind in (("eth0", "ingress"), ("vnif97", "egress")):
        listing = filters(lab, h2, dev, kind)
        assert ours(listing) == 1, (dev, kind, listing)
    before = [record(h1), record(h2)]
    r = lab.ping(a, b.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output
    g1, g2 = grown(before[0], record(h1)), grown(before[1], record(h2))
    assert g2["fast_rx_packets"] >= 3 and g2["fast_tx_packets"] >= 3, g2
    assert g1["fast_rx_packets"] >= 3 and g1["fast_tx_packets"] >= 3, g1
    assert ours(filters(lab, h3, "eth0", "ingress")) == 1 and "clsact" in qdiscs(lab, h3, "eth0")
    for h in (h1, h2, h3):
        h.kill(signal.SIGTERM)
        assert h.proc.returncode == 0, h.log.read_text()
    assert filters(lab, h1, "eth0", "ingress") == foreign
    assert "clsact" in qdiscs(lab, h1, "eth0")
    for h in (h2, h3):
        assert filters(lab, h, "eth0", "ingress") == "", h.name
        assert filters(lab, h, "eth0", "egress") == "", h.name
    assert "clsact" not in qdiscs(lab, h3, "eth0")


#: Someone else's tc program: drops ICMP over IPv4, lets everything else go on to
#: the next filter (TC_ACT_UNSPEC), as a well-behaved filter among others does.
DROP_ICMP = r"""
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int drop_icmp(struct __sk_buff *skb)
{
	__u8 proto;

	if (skb->protocol != __builtin_bswap16(0x0800) || bpf_skb_load_bytes(skb, 14 + 9, &proto, 1))
		return TC_ACT_UNSPEC;
	return proto == 1 ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
"""


def drop_icmp_object(tmp_path: Path) -> Path:
    """DROP_ICMP compiled as bpf/Makefile compiles the fast path (clang, libbpf-dev)."""
    src, obj = tmp_path / "drop_icmp.bpf.c", tmp_path / "drop_icmp.bpf.o"
    src.write_text(DROP_ICMP)
    try:
        arch = subprocess.run(["clang", "-print-multiarch"], capture_output=True, text=True, check=True)
        subprocess.run(["clang", "-target", "bpf", "-O2", "-g", f"-I/usr/include/{arch.stdout.strip()}",
                        "-c", str(src), "-o", str(obj)], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot build a tc program here (clang and libbpf-dev, as for bpf/): {e}")
    return obj


def test_filter_behind_ours_still_runs(lab, make_hosts, tmp_path) -> None:
    """A filter on the underlay's ingress at a priority after ours (2000 > 1798)
    still sees the packets the fast path does not take: here it drops ICMP to the
    host before vnetd starts, while it runs, and after it stopped."""
    obj = drop_icmp_object(tmp_path)
    h1, h2 = make_hosts(2, start=False, datapath="vnetd")
    lab.run(h1.host, ["tc", "qdisc", "add", "dev", "eth0", "clsact"], check=True)
    lab.run(h1.host, ["tc", "filter", "add", "dev", "eth0", "ingress", "pref", "2000", "bpf", "da", "obj",
                      str(obj), "sec", "tc"], check=True)
    assert lab.ping(h2.host, h1.ip, count=2, timeout=3).received == 0, "the test's filter drops nothing"
    h1.start()
    listing = filters(lab, h1, "eth0", "ingress")
    assert ours(listing) == 1 and "drop_icmp" in listing, listing
    assert lab.ping(h2.host, h1.ip, count=2, timeout=3).received == 0, \
        "a filter after ours no longer runs while the fast path is on"
    h1.kill(signal.SIGTERM)
    assert "drop_icmp" in filters(lab, h1, "eth0", "ingress")
    assert lab.ping(h2.host, h1.ip, count=2, timeout=3).received == 0


def test_a_capture_of_the_tunnel_point_sees_every_frame(lab, make_hosts, tmp_path) -> None:
    """The fast path sends a frame before the tap's packet taps see it: while `vn
    capture` reads the tunnel point the vnet takes the slow path (and says why), so
    the capture holds the pings both ways; once it ends the vnet is fast again."""
    from test_capture import Running, tshark

    h1, h2 = make_hosts(2)
    for h in (h1, h2):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", h1.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", h2.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=30)
    assert record(h1)["path"] == "fast"
    pings = 5
    out = tmp_path / "tunnel.pcapng"
    cap = Running(lab, h1, "-w", str(out), "-c", str(2 * pings), "-i", "tunnel", "97", "icmp")
    held = record(h1)
    assert held["path"] == "slow" and held["path_reason"] == "a capture of its tunnel point is open", held
    r = lab.ping(a, b.ip, count=pings, interval=0.05)
    assert r.received == pings, r.output
    assert f"{2 * pings} packets written" in cap.wait()
    seen = sorted((icmp, direction) for icmp, direction in tshark(out, "icmp.type", "frame.p2p_dir"))
    assert seen == [("0", "1")] * pings + [("8", "0")] * pings, seen  # requests out, replies in
    deadline = time.monotonic() + 30
    while record(h1)["path"] != "fast":
        assert time.monotonic() < deadline, record(h1)
        time.sleep(0.1)
    before = record(h1)["fast_tx_packets"]
    assert lab.ping(a, b.ip, count=3, interval=0.05).received == 3
    assert record(h1)["fast_tx_packets"] >= before + 3


def test_room_for_full_size_frames_keeps_them_fast(lab, tmp_path) -> None:
    """The two remedies doc/fastpath.md gives for full-size frames that are no GSO
    packets: an underlay 64 bytes larger than the vnet (1564 for 1500), or a vnet 64
    bytes smaller than the underlay (--mtu 1436).  Either way a whole frame goes fast,
    and 10 MB of TCP between the VMs goes (almost) all through the fast path: before,
    such frames went through vnetd as IP fragments whatever the MTUs.  A full-size
    IPv6 frame goes fast too, whatever the tap's MTU (before, only up to the tap's
    MTU minus 64 bytes)."""
    sw = lab.switch("sw")
    for mtu, vnet_mtu, subnet in ((1564, 1500, "10.0.0"), (1500, 1436, "10.0.1")):
        hosts = []
        for i in (1, 2):
            h = lab.host(f"m{mtu}h{i}", sw, f"{subnet}.{i}/24", mtu=mtu)
            vh = VnetHost(lab, h, tmp_path / h.name, datapath="vnetd")
            vh.start()
            vh.vn("vnet-create", "--mtu", str(vnet_mtu), "-b", f"vnet{mtu}", "-v", f"vnif{mtu}", str(mtu))
            hosts.append(vh)
        a = lab.vm(f"a{mtu}", hosts[0].host, f"vnet{mtu}", f"10.{mtu % 250}.0.1/24")
        b = lab.vm(f"b{mtu}", hosts[1].host, f"vnet{mtu}", f"10.{mtu % 250}.0.2/24")
        for vm in (a, b):
            vm.eth0.set_mtu(vnet_mtu)
        lab.wait_ping(a, b.ip, timeout=30)
        before = [record(h, str(mtu)) for h in hosts]
        r = ping_size(lab, a, b.ip, vnet_mtu - 28)
        assert r.received == 3, r.output
        for h, was in zip(hosts, before):
            g = grown(was, record(h, str(mtu)))
            assert g["fast_tx_packets"] >= 3 and g["fast_rx_packets"] >= 3, (mtu, h.name, g)
        for vm, addr in ((a, f"fd97:{mtu}::1/64"), (b, f"fd97:{mtu}::2/64")):
            lab.run(vm, ["ip", "-6", "addr", "add", addr, "dev", "eth0", "nodad"], check=True)
        lab.wait_ping(a, f"fd97:{mtu}::2", timeout=30)
        before = [record(h, str(mtu)) for h in hosts]
        r = ping_size(lab, a, f"fd97:{mtu}::2", vnet_mtu - 48)  # a full-size IPv6 frame each way
        assert r.received == 3, r.output
        for h, was in zip(hosts, before):
            g = grown(was, record(h, str(mtu)))
            assert g["fast_tx_packets"] >= 3 and g["fast_rx_packets"] >= 3, ("IPv6", mtu, h.name, g)
        before = [record(h, str(mtu)) for h in hosts]
        transfer(lab, a, b, "tcp", 10 * 1024 * 1024)
        g = grown(before[0], record(hosts[0], str(mtu)))
        # Bytes: the few frames of ARP and neighbour discovery are vnetd's by design.
        assert g["fast_tx_bytes"] >= 0.99 * g["tx_bytes"], (mtu, g)
        # The same over IPv6: full-size segments sent alone (no GSO packet) carry
        # partial checksums that the fast path completes after making room.
        before = [record(h, str(mtu)) for h in hosts]
        transfer6(lab, a, b, f"fd97:{mtu}::2", MB10)
        g = grown(before[0], record(hosts[0], str(mtu)))
        assert g["fast_tx_bytes"] >= 0.99 * g["tx_bytes"], ("IPv6", mtu, g)
