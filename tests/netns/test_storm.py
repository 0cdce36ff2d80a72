"""A live storm: random, truncated and mutated vnet messages of every kind, blasted at a
host from a third namespace on the underlay while two VMs ping each other through that
host.  The host must keep serving, account for every packet it took in, and (vnetd)
keep its memory flat.  Needs root.

Written once for both datapaths: tests/kernel/in_guest/test_kmod_storm.py runs it with
the kernel module as every host's datapath, whose kernel log test_guest.py checks.

What the counters must show (doc/wire-format.md, "Counters (not drops)"): every packet
the host counted as received (`udp-received` + `etherip-received`) ends in exactly one
outcome: delivered to a vnet device (its rx_packets; with the module also its
rx_dropped, where the stack counts a frame it could not take), a VARP request or
announce taken (`varp-requests`, `announces-received`), a challenge answered
(`answers-sent`), a session confirmed (`sessions-confirmed`) or one drop reason, leaving out
the reasons that count a packet already counted under its outcome or a send
(NOT_OUTCOMES).  What never reached the datapath is read from the kernel in the host's
namespace: datagrams a full socket buffer dropped (/proc/net/snmp `Udp: RcvbufErrors`,
and the raw socket's `drops` in /proc/net/raw: vnetd only, the module takes packets in
softirq with no queue), and packets the veth links on the way dropped (/proc/net/dev).
Protocol 97 comes from the storm only, so its packets are accounted for one by one;
UDP also carries the other host's traffic, so the storm's datagrams must be among
those the kernel took in.
"""
from __future__ import annotations

import random
import signal
import socket
import subprocess
import time

import pytest
from conftest import EXAMPLES, long_run, needs_root
from netns.test_security import sealed

from lab.lab import parse_ping
from lab.traffic import blast, write_pool
from lab.vnethost import run_in_namespace
from vnet.model import keys
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire
from vnet.wire import seal

pytestmark = [needs_root, pytest.mark.root]

#: Packets per storm: CI's short run (seconds; the module's guest is ~20x slower), and
#: the long run (VNET_LONG_TESTS=1).
SHORT = {"vnetd": 30_000, "kmod": 4_000}
LONG = {"vnetd": 1_000_000, "kmod": 100_000}
#: Distinct packets in the pool the sender cycles through.
POOL = 4096
#: Growth of vnetd's resident memory allowed between the storm's two halves: the pool
#: repeats, so whatever the first half made it keep (cache entries, replay windows,
#: flood records) the second half only refreshes.
RSS_SLACK_KB = 2048
#: Reasons that count a packet already counted under its outcome, or a send.
NOT_OUTCOMES = ("hop-limit", "send-error", "no-route", "table-full")
DEVICES = ("vnif97", "vnif98", "vnif99")
GROUP = socket.inet_aton(wire.DEFAULT_GROUP)


def test_a_storm_of_hostile_messages_leaves_the_host_serving_and_counting(lab, make_hosts, tmp_path):
    storm(lab, make_hosts, tmp_path, SHORT)


@long_run
def test_a_long_storm_of_hostile_messages(lab, make_hosts, tmp_path):
    storm(lab, make_hosts, tmp_path, LONG)


def storm(lab, make_hosts, tmp_path, sizes: dict[str, int]) -> None:
    """Host h (vnetd or the module, per make_hosts) with VM a on vnet 97, b with VM b,
    and x, the attacker, on one switch; `sizes[datapath]` packets from x at h."""
    sw = lab.switch("sw")
    h, b = make_hosts(2, switch=sw)
    x = lab.host("x", sw, "10.0.0.66/24")
    for host in (h, b):
        host.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    # Secure vnets whose keys the storm holds, so sealed messages get past the key
    # lookup to the tag, the replay windows and the body checks.
    held = {}
    for n, level in ((98, "auth"), (99, "conf")):
        path = tmp_path / f"{n}-1.key"
        held[n] = keys.write_key(path, 1)
        h.vn("vnet-create", "-s", level, "-k", str(path), str(n))
    h.vn("peer-add", x.ip)  # its VFWD messages get past the peer check
    a = lab.vm("a", h.host, "vnet97", "10.97.0.1/24")
    vb = lab.vm("b", b.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, vb.ip, timeout=30)

    rnd = random.Random(16)
    pool_path = tmp_path / "storm.pool"
    count = sizes[h.datapath]
    write_pool(pool_path, storm_pool(rnd, held, x.ip, b.ip, bytes.fromhex(a.mac.replace(":", "")),
                                     min(POOL, count // 4)))
    # vnetd's memory is compared between two halves; the module's storm goes in one.
    halves = (count // 2, count - count // 2) if h.datapath == "vnetd" else (count,)
    rss = [rss_kb(h)]
    first = counts(lab, h, x)
    sent = {"udp": 0, "raw": 0, "failed": {}, "seconds": 0.0}
    start = time.monotonic()
    pinger = lab.popen(a, ["ping", "-n", "-i", "0.05", vb.ip], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    try:
        for i, half in enumerate(halves):
            got = blast(x, h.ip, pool_path, half)
            for k in ("udp", "raw", "seconds"):
                sent[k] += got[k]
            for k, n in got["failed"].items():
                sent["failed"][k] = sent["failed"].get(k, 0) + n
            if i == 0 and len(halves) > 1:  # taken in, while the pings go on
                arrived(lab, h, x, first, sent)
                rss.append(rss_kb(h))
        pinger.send_signal(signal.SIGINT)
        during = parse_ping(pinger.communicate(timeout=30)[0])
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    d = settle(lab, h, x, first, sent)
    taken = (sent["udp"] + sent["raw"]) / (time.monotonic() - start)  # with the waits: at least
    rss.append(rss_kb(h))
    after_ping = lab.ping(a, vb.ip, count=5)
    rate = (sent["udp"] + sent["raw"]) / max(sent["seconds"], 1e-9)
    print(f"storm at {h.datapath}: sent {sent['udp']} UDP + {sent['raw']} raw in {sent['seconds']:.2f} s "
          f"({rate:.0f} packets/s; all taken in at {taken:.0f} packets/s or more), failed sends "
          f"{sent['failed']}; ping during the storm {during.received}/{during.transmitted} "
          f"({during.loss:.1f}% lost), after it "
          f"{after_ping.received}/5; received {d['udp-received']} UDP + {d['etherip-received']} raw, "
          f"socket-buffer drops {d['k:rcvbuf']} UDP + {d['k:rawdrops']} raw, link drops {d['k:linkdrops']}; "
          f"outcomes {outcome_sum(d)}; RSS kB {rss}")
    assert not sent["failed"], sent
    assert sent["udp"] + sent["raw"] == count
    assert_accounted(d, sent)
    assert after_ping.received == 5, after_ping.output
    if h.datapath == "vnetd":
        assert h.proc.poll() is None, h.log.read_text()
        assert rss[2] - rss[1] <= RSS_SLACK_KB, f"vnetd's RSS grew in the storm's second half: {rss} kB"


# ---- the pool -------------------------------------------------------------------------

def storm_pool(rnd: random.Random, held: dict[int, keys.Key], attacker: str, other: str,
               vm_mac: bytes, size: int) -> list[tuple[str, bytes]]:
    """`size` packets: a valid message of a random kind, kept (a quarter), truncated,
    mutated or extended; and plain random bytes.  ("udp" | "raw", payload)."""
    seq = [1 << 32]
    vids = [VnetId.parse(str(n)).packed for n in (97, 97, 97, 98, 99)]

    def vid() -> bytes:
        return rnd.choice(vids) if rnd.random() < 0.9 else rnd.randbytes(16)

    def mac() -> bytes:
        return bytes([rnd.randrange(256) & 0xFE | 0x02]) + rnd.randbytes(5)

    def frame() -> bytes:
        dst = b"\xff" * 6 if rnd.random() < 0.2 else mac()
        # A local experimental EtherType: nothing on the vnet answers it.
        return dst + mac() + b"\x88\xb5" + rnd.randbytes(rnd.randrange(0, 300))

    def addr() -> str:
        return rnd.choice([attacker, other, f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"])

    def varp(v: bytes) -> bytes:
        if rnd.random() < 0.5:
            return wire.pack_varp(wire.VARP_REQUEST, v, vm_mac if rnd.random() < 0.3 else mac(), attacker)
        ext = wire.VARP_EXT_SUPER if rnd.random() < 0.5 else b""
        return wire.pack_varp(wire.VARP_ANNOUNCE, v, mac(), addr()) + ext

    def sealed_msg() -> bytes:
        n = rnd.choice((98, 99))
        v = VnetId.parse(str(n)).packed
        seq[0] += rnd.randrange(1, 5000)
        kind = rnd.choice((seal.TYPE_FRAME, seal.TYPE_VARP, seal.TYPE_FRAME, seal.TYPE_VARP,
                           seal.TYPE_CHALLENGE, seal.TYPE_ANSWER))
        if kind in (seal.TYPE_CHALLENGE, seal.TYPE_ANSWER):
            # Answered (challenges) to the sealed sender: the attacker, so that the
            # answer's send cannot fail for want of a route.
            body, sender = rnd.randbytes(seal.CHALLENGE_LEN), attacker
        else:
            body = frame() if kind == seal.TYPE_FRAME else varp(v)
            sender = rnd.choice((attacker, addr()))
        key = held[n]
        return sealed(key, seal.LEVELS["auth" if n == 98 else "conf"], kind, body,
                      sender, seq[0], vid=VnetId.parse(str(n)))

    def inner_udp() -> bytes:
        return rnd.choice((lambda: wire.vudp_prefix(vid()) + frame(), lambda: varp(vid()), sealed_msg))()

    def inner_raw() -> bytes:
        return rnd.choice((lambda: wire.etherip_prefix(vid()) + frame(), sealed_msg))()

    def vfwd() -> bytes:
        origin = rnd.choice((socket.inet_aton(attacker), bytes(4), socket.inet_aton(addr())))
        ttl = rnd.randrange(0, 4)
        if rnd.random() < 0.5:
            p = inner_udp()
            if rnd.random() < 0.2:  # the original forwarder's bare relay
                return wire.VFWD_HEADER + bytes(9) + b"\x11" + bytes(2) + origin + GROUP + bytes(8) + p
            return wire.VFWD_HEADER + wire.vfwd_inner_udp(origin, GROUP, len(p), ttl=ttl) + p
        p = inner_raw()
        return wire.VFWD_HEADER + wire.ipv4_header(origin, GROUP, wire.IPPROTO_ETHERIP, len(p), ttl=ttl) + p

    makers = [
        ("udp", lambda: wire.vudp_prefix(vid()) + frame()),
        ("udp", lambda: varp(vid())),
        ("udp", vfwd),
        ("udp", sealed_msg),
        ("raw", lambda: wire.etherip_prefix(vid()) + frame()),
        ("raw", sealed_msg),
    ]
    limit = {"udp": 1472, "raw": 1480}  # one unfragmented packet on the 1500-byte underlay
    pool = []
    for _ in range(size):
        if rnd.random() < 0.1:
            kind = rnd.choice(("udp", "raw"))
            pool.append((kind, rnd.randbytes(rnd.randrange(0, limit[kind]))))
            continue
        kind, make = rnd.choice(makers)
        pool.append((kind, mutate(rnd, make())[:limit[kind]]))
    return pool


def mutate(rnd: random.Random, p: bytes) -> bytes:
    """p kept, cut short, with a few bytes changed (often in the headers), or lengthened."""
    r = rnd.random()
    if r < 0.25 or not p:
        return p
    if r < 0.5:
        return p[:rnd.randrange(len(p))]
    if r < 0.9:
        b = bytearray(p)
        for _ in range(rnd.randrange(1, 4)):
            i = rnd.randrange(min(len(b), 64)) if rnd.random() < 0.7 else rnd.randrange(len(b))
            b[i] = rnd.randrange(256)
        return bytes(b)
    return p + rnd.randbytes(rnd.randrange(1, 64))


# ---- what the host and the kernel counted ------------------------------------------------

KERNEL_FILES = ("/proc/net/snmp", "/proc/net/raw", "/proc/net/dev")


def _print_files(*paths: str) -> int:
    for path in paths:
        with open(path) as f:
            print(f.read(), end="")
    return 0


def kernel_counts(lab, node, under: str) -> dict[str, int]:
    """The kernel's counts in `node`'s namespace, one `cat`: UDP datagrams read and
    dropped for a full buffer, protocol-97 raw sockets' drops, and the devices'
    packets and drops."""
    code, text, err = run_in_namespace(node.ns, _print_files, *KERNEL_FILES)
    assert code == 0, err
    out: dict[str, int] = {"k:rawdrops": 0}
    lines = text.splitlines()
    udp = [line.split()[1:] for line in lines if line.startswith("Udp:")]
    if udp:
        named = dict(zip(udp[0], udp[1]))
        out["k:indatagrams"] = int(named["InDatagrams"])
        out["k:rcvbuf"] = int(named["RcvbufErrors"])
    for line in lines:
        f = line.split()
        if len(f) > 12 and f[1].endswith(":0061") and f[0].endswith(":"):  # a raw socket of protocol 97
            out["k:rawdrops"] += int(f[-1])
        if ":" in line and line.split(":")[0].strip() in (*DEVICES, under):
            name, stats = line.split(":", 1)
            s = [int(v) for v in stats.split()]
            out[f"{name.strip()}:rx"], out[f"{name.strip()}:rxdrop"] = s[1], s[3]
            out[f"{name.strip()}:txdrop"] = s[11]
    return out


def link_drops(lab, h, x) -> int:
    """Packets the veth links dropped on their way into the host or out of `x`."""
    return kernel_counts(lab, h.host, "eth0").get("eth0:rxdrop", 0) + kernel_counts(lab, x, "eth0")["eth0:txdrop"]


def counts(lab, h, x) -> dict[str, int]:
    """The host's counters, its kernel's and the links' drops, read so that no packet
    was taken in between (the kernel's counts are the same before and after)."""
    while True:
        k1 = kernel_counts(lab, h.host, "eth0")
        c = h.counters() | {"fast-rx": fast_rx(h)}
        k2 = kernel_counts(lab, h.host, "eth0")
        if k1 == k2:
            return {**c, **k1, "k:linkdrops": k1["eth0:rxdrop"] + kernel_counts(lab, x, "eth0")["eth0:txdrop"]}


def fast_rx(h) -> int:
    """Frames vnetd's fast path took off the underlay (doc/fastpath.md): a storm
    frame from the host its source MAC was learned at is one, never a datagram of
    vnetd's socket; 0 on the module."""
    return sum(v.get("fast_rx_packets", 0) for v in h.vn_json("vnets"))


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in {*before, *after}}


def delivered(d: dict[str, int], datapath: str) -> int:
    """Frames handed to the vnet devices.  vnetd counts a failed tap write itself
    (`tap-write-error`), and the tap counts it as dropped too: only rx_packets then."""
    return sum(d.get(f"{dev}:rx", 0) + (d.get(f"{dev}:rxdrop", 0) if datapath == "kmod" else 0)
               for dev in DEVICES)


def outcome_sum(d: dict[str, int]) -> dict[str, int]:
    drops = {k[5:]: n for k, n in d.items() if k.startswith("drop:") and n}
    return {"delivered": d["delivered"], "varp-requests": d.get("varp-requests", 0),
            "announces-received": d.get("announces-received", 0), **drops}


def accounted(d: dict[str, int]) -> tuple[int, int]:
    """(received, outcomes) over a delta of `counts`."""
    received = d.get("udp-received", 0) + d.get("etherip-received", 0)
    outcomes = (d["delivered"] + d.get("varp-requests", 0) + d.get("announces-received", 0)
                + d.get("answers-sent", 0) + d.get("sessions-confirmed", 0)
                + sum(n for k, n in d.items() if k.startswith("drop:") and k[5:] not in NOT_OUTCOMES))
    return received, outcomes


def arrival(d: dict[str, int], sent: dict) -> bool:
    """Whether every storm packet sent has been taken in by the datapath, dropped by a
    full socket buffer or dropped by a link (more, with the other host's traffic)."""
    lost = d["k:linkdrops"]
    return (d["k:indatagrams"] + d["k:rcvbuf"] + d.get("fast-rx", 0) + lost >= sent["udp"]
            and d.get("etherip-received", 0) + d["k:rawdrops"] + lost >= sent["raw"])


def arrived(lab, h, x, before: dict[str, int], sent: dict) -> None:
    """Wait until the storm sent so far has been taken in (traffic may go on)."""
    deadline = time.monotonic() + 300
    while not arrival(delta(before, kernel_counts(lab, h.host, "eth0") | h.counters()
                            | {"fast-rx": fast_rx(h), "k:linkdrops": link_drops(lab, h, x)}), sent):
        if time.monotonic() > deadline:
            raise AssertionError(f"{h.name} did not take in the storm: sent {sent}")
        time.sleep(0.2)


def settle(lab, h, x, before: dict[str, int], sent: dict) -> dict[str, int]:
    """Wait until the host has taken in every packet sent and counted each one's
    outcome (the module checks sealed messages off softirq); the counts' delta then."""
    deadline = time.monotonic() + 300
    while True:
        d = delta(before, counts(lab, h, x))
        d["delivered"] = delivered(d, h.datapath)
        received, outcomes = accounted(d)
        if arrival(d, sent) and received == outcomes:
            return d
        if time.monotonic() > deadline:
            raise AssertionError(f"{h.name} did not account for the storm: sent {sent}, "
                                 f"received {received}, outcomes {outcomes}, counts {d}")
        time.sleep(0.2)


def assert_accounted(d: dict[str, int], sent: dict) -> None:
    """The storm's packets all arrived (but what the links dropped), the datapath
    counted every datagram the kernel gave it, and every one has its outcome."""
    received, outcomes = accounted(d)
    assert received == outcomes, (received, outcomes, d)
    # Every datagram the kernel handed to the datapath's UDP socket was counted.
    assert d["k:indatagrams"] == d["udp-received"], d
    lost = d["k:linkdrops"]
    # Protocol 97 comes from the storm only; UDP also from the other host's vnetd.
    raw_in = d["etherip-received"] + d["k:rawdrops"]
    assert raw_in <= sent["raw"] <= raw_in + lost, (sent, d)
    # ... or the fast path took it off the underlay before any socket.
    assert sent["udp"] <= d["k:indatagrams"] + d["k:rcvbuf"] + d.get("fast-rx", 0) + lost, (sent, d)


def rss_kb(h) -> int:
    """vnetd's resident set (kB), 0 for the module."""
    if h.datapath != "vnetd":
        return 0
    with open(f"/proc/{h.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
