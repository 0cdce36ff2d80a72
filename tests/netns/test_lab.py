"""Tests for lab/, the namespace topology builder the other tests rely on.

If the lab leaks namespaces or processes, every later test run inherits the
mess, so teardown gets as much attention here as building topologies.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from lab.lab import Interface, Lab, Link, PingResult, cleanup_stale, parse_ping

try:
    from pyroute2 import IPRoute, netns
except ImportError:  # pragma: no cover - pyroute2 is a hard dependency
    IPRoute = netns = None

root = pytest.mark.root
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")
needs_ping = pytest.mark.skipif(
    shutil.which("ping") is None, reason="ping not installed (Debian package iputils-ping)"
)

_seq = iter(range(1000))


def _prefix() -> str:
    # Keep "vl<pid>" before the first dash so cleanup_stale could recognise
    # leftovers, and a per-test suffix so one test's leak can't break the next.
    return f"vl{os.getpid()}-t{next(_seq)}"


def _ours(prefix: str) -> list[str]:
    return [n for n in netns.listnetns() if n.startswith(prefix + "-")]


def _make_bridge(ns: str, name: str) -> None:
    """Stand in for vnetd: a plain Linux bridge inside a host namespace."""
    with IPRoute(netns=ns, flags=0) as ipr:
        ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")


def _master_of(ns: str, ifname: str) -> str | None:
    with IPRoute(netns=ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        master = ipr.link("get", index=idx[0])[0].get_attr("IFLA_MASTER")
        if not master:
            return None
        return ipr.link("get", index=master)[0].get_attr("IFLA_IFNAME")


# --- parser (no privileges needed) -------------------------------------------


def test_parse_ping_with_duplicates():
    out = (
        "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n"
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.05 ms\n"
        "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.06 ms (DUP!)\n\n"
        "--- 10.0.0.2 ping statistics ---\n"
        "3 packets transmitted, 3 received, +2 duplicates, 0% packet loss, time 402ms\n"
    )
    r = parse_ping(out)
    assert (r.transmitted, r.received, r.duplicates) == (3, 3, 2)
    assert r.ok and r.loss == 0.0


def test_parse_ping_counts_the_requests_asked_for():
    """With a deadline, a slow 5-ping run may send a 6th request and see 6 replies."""
    out = "".join(f"64 bytes from 10.0.0.2: icmp_seq={i} ttl=64 time=300 ms\n" for i in range(1, 7))
    out += "64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=301 ms (DUP!)\n"
    out += "6 packets transmitted, 6 received, +1 duplicates, 0% packet loss, time 1000ms\n"
    assert (parse_ping(out).transmitted, parse_ping(out).received) == (6, 6)
    r = parse_ping(out, 5)
    assert (r.transmitted, r.received, r.duplicates) == (5, 5, 1)
    lost = out.replace("icmp_seq=3 ", "icmp_seq=9 ")
    assert parse_ping(lost, 5).received == 4


def test_parse_ping_failures():
    r = parse_ping("3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n")
    assert (r.transmitted, r.received, r.duplicates, r.ok, r.loss) == (3, 0, 0, False, 100.0)
    unreachable = ("From 10.0.0.1 icmp_seq=1 Destination Host Unreachable\n"
                   "From 10.0.0.1 icmp_seq=2 Destination Host Unreachable\n"
                   "2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1001ms\n")
    assert parse_ping(unreachable, 2).received == 0  # an error report is no reply
    r = parse_ping("ping: connect: Network is unreachable\n")
    assert r == PingResult(0, 0, 0, "ping: connect: Network is unreachable\n")
    assert not r.ok


# --- topologies ----------------------------------------------------------------


@root
@needs_root
@needs_ping
def test_two_hosts_on_a_switch():
    prefix = _prefix()
    with Lab(prefix) as lab:
        sw = lab.switch("s")
        a = lab.host("a", sw, "10.77.1.1/24")
        b = lab.host("b", sw, "10.77.1.2/24", mtu=1400)
        assert (a.ns, a.ip, a.ifname, a.name) == (f"{prefix}-a", "10.77.1.1", "eth0", "a")
        assert _master_of(sw.ns, "a") == "sw0"
        # IPv6 is on in hosts, as on real machines (a link-local address on eth0), and
        # off on the switch, which is no host.
        cp = lab.run(a, ["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"], check=True)
        assert cp.stdout.strip() == "0"
        assert [x.split("/")[0][:5] for x in a.eth0.ipv6_addresses] == ["fe80:"]
        cp = lab.run(sw, ["cat", "/proc/sys/net/ipv6/conf/sw0/disable_ipv6"], check=True)
        assert cp.stdout.strip() == "1" and sw.intf("sw0").ipv6_addresses == []
        r = lab.ping(a, b.ip)
        assert r.ok and r.transmitted == 3 and r.received == 3 and r.duplicates == 0, r.output
        assert lab.ping(b, a.ip, count=1).ok
        assert lab.wait_ping(b, a.ip, timeout=5) < 5
        # Nothing answers on an unused address: short, not an exception.
        assert not lab.ping(a, "10.77.1.99", count=1, timeout=1).ok
        with pytest.raises(TimeoutError):
            lab.wait_ping(a, "10.77.1.99", timeout=1)
    assert _ours(prefix) == []


@root
@needs_root
@needs_ping
def test_router_between_subnets():
    prefix = _prefix()
    with Lab(prefix) as lab:
        s1, s2 = lab.switch("s1"), lab.switch("s2")
        r = lab.router("r", [(s1, "10.77.1.254/24"), (s2, "10.77.2.254/24")])
        a = lab.host("a", s1, "10.77.1.1/24", gateway="10.77.1.254")
        b = lab.host("b", s2, "10.77.2.1/24", gateway="10.77.2.254")
        assert r.addresses == ["10.77.1.254/24", "10.77.2.254/24"]
        cp = lab.run(r, ["cat", "/proc/sys/net/ipv4/ip_forward"], check=True)
        assert cp.stdout.strip() == "1"
        lab.wait_ping(a, b.ip, timeout=5)
        res = lab.ping(b, a.ip)
        assert res.received == 3, res.output
    assert _ours(prefix) == []


@root
@needs_root
@needs_ping
def test_vms_on_host_bridge_and_migration():
    prefix = _prefix()
    with Lab(prefix) as lab:
        sw = lab.switch("s")
        h1 = lab.host("h1", sw, "10.77.1.1/24")
        h2 = lab.host("h2", sw, "10.77.1.2/24")
        _make_bridge(h1.ns, "br0")
        # vm() must wait for a bridge that "vnetd" creates a little later.
        t = threading.Timer(0.3, _make_bridge, args=(h2.ns, "br0"))
        t.start()
        try:
            v3 = lab.vm("v3", h2, "br0", "10.78.0.3/24", timeout=5)
        finally:
            t.join()
        v1 = lab.vm("v1", h1, "br0", "10.78.0.1/24")
        v2 = lab.vm("v2", h1, "br0", "10.78.0.2/24", mac="02:00:00:00:00:02")
        assert v2.mac == "02:00:00:00:00:02" and v2.ip == "10.78.0.2"
        assert v2.host is h1 and len(v2.port) <= 15 and v2.port != v1.port
        assert _master_of(h1.ns, v2.port) == "br0"
        r = lab.ping(v1, v2.ip)
        assert r.received == 3 and r.duplicates == 0, r.output
        # Different host bridges are not connected: v3 is out of reach.
        assert not lab.ping(v1, v3.ip, count=1, timeout=1).ok

        old_port, ns = v2.port, v2.ns
        lab.move_vm(v2, h2, "br0")
        assert (v2.ns, v2.ip, v2.mac, v2.host) == (ns, "10.78.0.2", "02:00:00:00:00:02", h2)
        assert _master_of(h2.ns, v2.port) == "br0"
        assert _master_of(h1.ns, old_port) is None  # old cable is gone
        # Ask netlink, not /sys: setns alone (unlike `ip netns exec`) does not
        # remount sysfs, so /sys/class/net still shows the root namespace.
        with IPRoute(netns=v2.ns, flags=0) as ipr:
            eth0 = ipr.link("get", index=ipr.link_lookup(ifname="eth0")[0])[0]
            assert eth0.get_attr("IFLA_ADDRESS") == "02:00:00:00:00:02"
        lab.wait_ping(v2, v3.ip, timeout=5)
        assert not lab.ping(v1, v2.ip, count=1, timeout=1).ok

        with pytest.raises(TimeoutError):
            lab.vm("v4", h1, "nosuchbr", "10.78.0.4/24", timeout=0.3)
    assert _ours(prefix) == []


# --- interfaces and links --------------------------------------------------------


def _mtu(ns: str, ifname: str) -> int:
    with IPRoute(netns=ns, flags=0) as ipr:
        return ipr.link("get", index=ipr.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_MTU")


def _switch_and_hosts(lab: Lab, *names: str):
    """A switch ``s`` and hosts ``names`` on it, at 10.77.1.1, 10.77.1.2, ..."""
    sw = lab.switch("s")
    return sw, *(lab.host(n, sw, f"10.77.1.{i}/24") for i, n in enumerate(names, 1))


def _df_ping(lab: Lab, node, address: str, size: int) -> bool:
    """One ping of ``size`` bytes of IP packet that must not be fragmented."""
    cp = lab.run(node, ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", str(size - 28), address])
    return cp.returncode == 0


@root
@needs_root
@needs_ping
def test_interfaces_of_nodes_configure_themselves():
    prefix = _prefix()
    with Lab(prefix) as lab:
        sw, a, b = _switch_and_hosts(lab, "a", "b")
        assert a.eth0 == Interface("eth0", a.ns) and sw.intf("sw0") == Interface("sw0", sw.ns)
        assert (a.eth0.mac, a.eth0.mtu, a.eth0.addresses, a.eth0.is_up) == (a.mac, 1500, [a.address], True)
        assert a.eth0.master is None and sw.intf("a").master == "sw0"
        # The MTU set through the interface is the kernel's, and packets obey it.
        lab.wait_ping(a, b.ip, timeout=5)
        assert _df_ping(lab, a, b.ip, 1500)
        a.eth0.set_mtu(1400)
        assert a.eth0.mtu == 1400 == _mtu(a.ns, "eth0")
        assert not _df_ping(lab, a, b.ip, 1401)
        assert _df_ping(lab, a, b.ip, 1400)
        rx = b.eth0.stats["rx_packets"]
        assert lab.ping(a, b.ip, count=2).received == 2
        assert b.eth0.stats["rx_packets"] >= rx + 2
        # A second address, configured by the interface itself, answers too.
        b.eth0.configure("10.77.2.2/24")
        assert b.eth0.addresses == [b.address, "10.77.2.2/24"]
        a.eth0.configure("10.77.2.1/24")
        lab.wait_ping(a, "10.77.2.2", timeout=5)
        with pytest.raises(LookupError):
            a.intf("eth9")
        with pytest.raises(LookupError):
            _ = Interface("nosuch0", a.ns).mtu
        with pytest.raises(LookupError):
            _ = sw.eth0  # a switch has a bridge, no NIC
    assert _ours(prefix) == []


@root
@needs_root
@needs_ping
def test_links_go_down_come_up_and_are_removed():
    prefix = _prefix()
    with Lab(prefix) as lab:
        sw, a, b = _switch_and_hosts(lab, "a", "b")
        cable = lab.link(a.eth0)
        assert cable.intfs == (a.eth0, sw.intf("a")) and lab.links == [cable, lab.link(b.eth0)]
        lab.wait_ping(a, b.ip, timeout=5)
        # A pulled cable: nothing crosses until it is plugged back in.
        cable.set_up(False)
        assert not cable.is_up and not a.eth0.is_up and not sw.intf("a").is_up
        assert not lab.ping(a, b.ip, count=1, timeout=1).ok
        cable.set_up()
        assert cable.is_up
        lab.wait_ping(a, b.ip, timeout=10)

        # A link made by hand between two nodes, configured end by end.
        direct = Link.create(a.ns, "x0", b.ns, "x0", mtu=9000, mac="02:00:00:00:77:01")
        assert direct.intfs == (Interface("x0", a.ns), Interface("x0", b.ns)) and direct.exists()
        assert direct.intf1.configure("10.77.9.1/30") == "02:00:00:00:77:01"
        direct.intf2.configure("10.77.9.2/30", mtu=1280, mac="02:00:00:00:77:02")
        assert (direct.intf1.mtu, direct.intf2.mtu, direct.intf2.mac) == (9000, 1280, "02:00:00:00:77:02")
        lab.wait_ping(b, "10.77.9.1", timeout=5)
        direct.remove()
        assert not direct.exists() and not direct.intf2.exists()
        assert "x0" not in lab.link_names(a) and "x0" not in lab.link_names(b)
        direct.remove()  # idempotent

        # Removing a lab link forgets it, with its ends on both nodes.
        lab.remove_link(cable)
        assert lab.links == [lab.link(b.eth0)] and "eth0" not in a.intfs and "a" not in sw.intfs
        assert "eth0" not in lab.link_names(a) and "a" not in lab.link_names(sw)
        with pytest.raises(LookupError):
            lab.link(Interface("eth0", a.ns))
        assert not lab.ping(b, a.ip, count=1, timeout=1).ok
        # So does removing a node: the far end of its cable goes with its namespace.
        lab.remove(b)
        assert lab.links == [] and sw.intfs == {"sw0": Interface("sw0", sw.ns)}
        assert lab.link_names(sw) == {"lo", "sw0"}
    assert lab.links == []
    assert _ours(prefix) == []


@root
@needs_root
def test_vm_links_follow_migration():
    prefix = _prefix()
    with Lab(prefix) as lab:
        _, h1, h2 = _switch_and_hosts(lab, "h1", "h2")
        for h in (h1, h2):
            _make_bridge(h.ns, "br0")
        v = lab.vm("v", h1, "br0", "10.78.0.1/24")
        old = v.link
        assert lab.link(v.eth0) is old and old.intf2 == h1.intf(v.port) == Interface(v.port, h1.ns)
        assert old.intf2.master == "br0" and v.eth0.mtu == 1500
        lab.move_vm(v, h2, "br0", announce=False)
        assert v.link is not old and lab.link(v.eth0) is v.link and old not in lab.links
        assert not old.exists() and old.intf2.name not in h1.intfs
        assert v.link.intf2 == h2.intf(v.port) and v.link.intf2.master == "br0"
        assert (v.eth0.mac, v.eth0.addresses) == (v.mac, [v.address])
    assert _ours(prefix) == []


# --- teardown ------------------------------------------------------------------


@root
@needs_root
def test_cleanup_kills_processes_and_removes_namespaces():
    prefix = _prefix()
    lab = Lab(prefix)
    lab.TERM_GRACE = 0.5
    with lab:
        sw = lab.switch("s")
        h = lab.host("h", sw, "10.77.1.1/24")
        plain = lab.popen(h, ["sleep", "60"])
        # Ignores SIGTERM: must be SIGKILLed after the grace period.
        stubborn = lab.popen(sw, ["sh", "-c", "trap '' TERM; sleep 60 & wait"])
        # A daemon that left its process group: only the namespace sweep finds it.
        spawner = lab.popen(h, ["sh", "-c", "setsid sleep 60 & echo $!"], stdout=subprocess.PIPE, text=True)
        escaped = int(spawner.stdout.readline())
        spawner.wait()
        spawner.stdout.close()
        time.sleep(0.2)
        assert plain.poll() is None and stubborn.poll() is None
        assert set(lab.namespaces) == {sw.ns, h.ns} == set(_ours(prefix))
    assert plain.poll() is not None and stubborn.poll() is not None
    assert not os.path.exists(f"/proc/{escaped}") or _zombie(escaped)
    assert _ours(prefix) == []
    assert lab.errors == []
    lab.cleanup()  # idempotent
    with pytest.raises(RuntimeError):
        lab.switch("again")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@root
@needs_root
def test_cleanup_runs_when_body_raises():
    prefix = _prefix()
    procs = []
    with pytest.raises(RuntimeError, match="boom"):
        with Lab(prefix) as lab:
            sw = lab.switch("s")
            lab.host("a", sw, "10.77.1.1/24")
            procs.append(lab.popen(sw, ["sleep", "60"]))
            assert len(_ours(prefix)) == 2
            raise RuntimeError("boom")
    assert _ours(prefix) == []
    assert procs[0].poll() is not None


@root
@needs_root
def test_cleanup_stale_removes_only_dead_owners():
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names a run that no longer exists
    stale = f"vl{dead.pid}-x"
    with Lab() as live:  # default prefix: our own, living pid
        live.switch("s")
        netns.create(stale)
        try:
            removed = cleanup_stale()
            assert stale in removed
            assert all(not n.startswith(live.prefix + "-") for n in removed)
            assert stale not in netns.listnetns()
            assert f"{live.prefix}-s" in netns.listnetns()
        finally:
            if stale in netns.listnetns():
                netns.remove(stale)


_SIGNAL_SCRIPT = """
import sys, time
from lab.lab import Lab
Lab.install_signal_handlers()
with Lab(sys.argv[1]) as lab:
    sw = lab.switch("s")
    h = lab.host("h", sw, "10.77.1.1/24")
    p = lab.popen(h, ["sleep", "60"])
    print(p.pid, flush=True)
    while True:
        lab.host("x%d" % time.monotonic_ns(), sw, "10.77.1.2/24")  # keep pyroute2 forking
"""


@root
@needs_root
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_cleans_up(sig):
    """Ctrl-C / kill mid-build must still remove everything.

    Sent to the whole process group, as a terminal's Ctrl-C is, so pyroute2's
    forked helpers get it too and must not tear the lab down from under us.
    """
    import signal as _signal

    prefix = _prefix()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_SCRIPT, prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        sleeper = int(proc.stdout.readline())
        time.sleep(0.3)
        os.killpg(proc.pid, getattr(_signal, sig))
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # An uncaught KeyboardInterrupt makes Python re-kill itself with SIGINT.
    signum = getattr(_signal, sig)
    assert proc.returncode in (-signum, 128 + signum), err
    assert _ours(prefix) == []
    assert not os.path.exists(f"/proc/{sleeper}") or _zombie(sleeper)
