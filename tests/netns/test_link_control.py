"""Link control on ports (doc/ports.md, "Link control") with vnetd: a lab link (vnet 97)
between namespace routers r0 (a port on host h1) and r1 (a port on host h2).  The
impairments of r1's port act on what vnetd sends out of it, so they are the direction
r0 -> r1 alone; suspension stops the port both ways.  Everything is changed live with
`vn port-set` (vnetd keeps its pid) and comes back after a vnetd restart.

The measurements are of real pings and a real TCP transfer, in bands wide enough for a
busy machine; waits have deadlines, never fixed sleeps."""
from __future__ import annotations

import statistics
import time

import pytest
from conftest import needs_root

from lab.capture import Capture
from lab.ping import parse_ping
from lab.traffic import send_frames, transfer
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

V97 = str(VnetId.parse("97"))
DEADLINE = 60.0


def link(lab, make_hosts):
    """Two hosts, a router behind a port on each, joined by vnet 97; returns (hosts, vms)
    once r0 pings r1."""
    hosts = make_hosts(2)
    vms = [lab.vm(f"r{i}", h.host, "", f"10.97.0.{i + 1}/24", plugged=False) for i, h in enumerate(hosts)]
    for h, vm in zip(hosts, vms):
        h.vn("vnet-create", "--bridge", "none", "--port", vm.port, "97")
    for h, vm in zip(hosts, vms):
        wait_port(h, vm.port, lambda p: p["state"] == "attached")
    lab.wait_ping(vms[0], vms[1].ip, timeout=DEADLINE)
    return hosts, vms


def wait_port(vh, name: str, ok, timeout: float = DEADLINE) -> dict:
    """The port's `vn ports --json` view once ok(view)."""
    deadline = time.monotonic() + timeout
    while True:
        view = next((p for p in vh.vn_json("ports") if p["ifname"] == name), None)
        if view is not None and ok(view):
            return view
        assert time.monotonic() < deadline, f"port {name} on {vh.name}: {view}"
        time.sleep(0.1)


def pings(lab, vm, address: str, count: int, interval: float, timeout: float = 120, wait: int = 2):
    """iputils ping with its replies' round-trip times (ms); `wait` is how long ping
    waits for a reply after its last request (-W)."""
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), address]
    r = lab.run(vm, argv, timeout=timeout)
    out = (r.stdout or "") + (r.stderr or "")
    rtts = [float(w.split("=")[1]) for w in out.split() if w.startswith("time=")]
    return parse_ping(out, count), rtts


def test_suspend_resume_live_and_persisted(lab, make_hosts):
    """(a) A suspended link carries nothing, counted; resumed, pings come back. (f) No
    restart (vnetd keeps its pid), and a vnetd restart keeps the suspension."""
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    pid = h2.proc.pid
    before = h2.counters()
    out = h2.vn("port-set", "97", r1.port, "--suspend").stdout
    assert out.strip() == f"port {r1.port}: suspended"
    view = wait_port(h2, r1.port, lambda p: p["link"]["suspended"])
    assert view["state"] == "attached"  # attached and up, only stopped
    result, _ = pings(lab, r0, r1.ip, 10, 0.05)
    assert result.transmitted == 10 and result.received == 0
    h2.wait_counters(before, {"drop:link-suspended": 10})
    # Frames from r1 are not taken either: r1's own pings do not reach r0.
    before = h2.counters()
    result, _ = pings(lab, r1, r0.ip, 5, 0.05)
    assert result.received == 0
    h2.wait_counters(before, {"drop:link-suspended": 5})
    assert h2.proc.pid == pid and h2.proc.poll() is None
    # Kept: a vnetd restart brings the port back suspended.
    h2.kill()
    h2.start()
    wait_port(h2, r1.port, lambda p: p["state"] == "attached" and p["link"] == {"suspended": True})
    assert parse_ping(lab.run(r0, ["ping", "-n", "-c", "3", "-i", "0.1", "-W", "1", r1.ip]).stdout).received == 0
    h2.vn("port-set", "97", r1.port, "--resume")
    started = time.monotonic()
    lab.wait_ping(r0, r1.ip, timeout=DEADLINE)
    print(f"pings came back {time.monotonic() - started:.2f} s after --resume")
    (cfg,) = h2.vn_json("vnet-list")
    assert cfg["ports"] == [r1.port]


def test_loss_in_one_direction(lab, make_hosts):
    """(b) 10 % loss on r1's port: 7-13 % of 2,000 pings lost, each loss counted."""
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    h2.vn("port-set", "97", r1.port, "--loss", "10")
    before = h2.counters()
    result, _ = pings(lab, r0, r1.ip, 2000, 0.002, timeout=300)
    after = h2.counters()
    print(f"2000 pings through 10 % loss: {result.loss:.1f} % lost")
    assert result.transmitted == 2000
    assert 7.0 <= result.loss <= 13.0, result.output[-300:]
    counted = after.get("drop:link-loss", 0) - before.get("drop:link-loss", 0)
    lost = result.transmitted - result.received
    assert lost <= counted <= lost + 20  # + the ARP frames that met the same fate
    # The other direction has none: r1's port is what was set, h1's is clean.
    assert hosts[0].counters().get("drop:link-loss", 0) == 0
    assert wait_port(h2, r1.port, lambda p: True)["link"] == {"loss": 10, "suspended": False}


def test_delay_in_one_direction(lab, make_hosts):
    """(c) 50 ms of delay on r1's port adds 45-60 ms to the median round trip of 20
    pings, against a baseline measured here first; removed, it is gone."""
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    _, base = pings(lab, r0, r1.ip, 20, 0.05)
    h2.vn("port-set", "97", r1.port, "--delay", "50")
    result, slow = pings(lab, r0, r1.ip, 20, 0.05)
    assert result.received >= 18, result.output
    added = statistics.median(slow) - statistics.median(base)
    print(f"median rtt {statistics.median(base):.2f} ms, with 50 ms delay {statistics.median(slow):.2f} ms")
    assert 45.0 <= added <= 60.0, (base, slow)
    h2.vn("port-set", "97", r1.port, "--delay", "0")
    _, back = pings(lab, r0, r1.ip, 20, 0.05)
    assert statistics.median(back) < statistics.median(slow) - 40


def test_rate_limit(lab, make_hosts):
    """(d) A TCP transfer towards r1 through a port limited to 10mbit: between 5 and
    11 Mbit/s (unlimited, the same transfer is many times faster)."""
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    h2.vn("port-set", "97", r1.port, "--rate", "10mbit")
    amount = 3_000_000
    started = time.monotonic()
    transfer(lab, r0, r1, "tcp", amount)  # checks every byte arrived
    took = time.monotonic() - started
    mbit = amount * 8 / took / 1e6
    print(f"{amount} bytes through 10mbit in {took:.2f} s: {mbit:.2f} Mbit/s")
    assert 5.0 <= mbit <= 11.0
    assert wait_port(h2, r1.port, lambda p: True)["link"] == {"rate": 10_000_000, "suspended": False}


def test_corruption(lab, make_hosts):
    """(e) corrupt 100 on r1's port: frames arrive with one bit flipped."""
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    h2.vn("port-set", "97", r1.port, "--corrupt", "100")
    src = bytes.fromhex(r0.mac.replace(":", ""))
    # The index three times: any two frames differ in at least 3 bits, so one flipped
    # bit never turns a frame into another of ours ("corrupt-001" and "corrupt-000"
    # are one bit apart, which once passed for a frame arriving unaltered).
    frames = [b"\xff" * 6 + src + b"\x88\xb5" + f"corrupt-{i:03d}-{i:03d}-{i:03d}".encode() + bytes(100)
              for i in range(30)]

    def flipped(seen: list[bytes]) -> list[bytes]:
        """The frames seen that are one of ours with exactly one bit flipped."""
        out = []
        for f in seen:
            for g in frames:
                if len(f) == len(g) and sum(bin(a ^ b).count("1") for a, b in zip(f, g)) == 1:
                    out.append(f)
                    break
        return out

    with Capture(lab, r1, received="eth0") as cap:
        send_frames(lab, r0, "eth0", frames)
        got = cap.wait_for(lambda seen: len(flipped(seen)) >= 20, "20 frames with one bit flipped")
    assert not any(f in got for f in frames), "a frame arrived unaltered through corrupt 100"


def test_bad_values_change_nothing(lab, make_hosts):
    """(f) Bad values: clear errors naming option, value and port; nothing changes."""
    (h,) = make_hosts(1)
    vm = lab.vm("x0", h.host, "", "10.97.0.1/24", plugged=False)
    h.vn("vnet-create", "--bridge", "none", "--port", vm.port, "97")
    h.vn("port-set", "97", vm.port, "--delay", "20")
    for args, message in [
        (["--loss", "101"], f"port {vm.port} of vnet {V97}: loss '101' is out of range: 0 to 100 percent"),
        (["--delay", "soon"], f"port {vm.port} of vnet {V97}: delay 'soon' is not a number (ms)"),
        (["--rate", "10mbits"], f"port {vm.port} of vnet {V97}: rate '10mbits' is not a rate"),
    ]:
        r = h.vn("port-set", "97", vm.port, *args, check=False)
        assert r.returncode == 1 and message in r.stderr, r.stderr
    r = h.vn("port-set", "97", "nosuch0", "--loss", "5", check=False)
    assert r.returncode == 1 and "has no port nosuch0" in r.stderr, r.stderr
    assert wait_port(h, vm.port, lambda p: True)["link"] == {"delay": 20, "suspended": False}
    assert f"(port {vm.port} (delay 20))" in h.vn("vnet-list", "-l").stdout
