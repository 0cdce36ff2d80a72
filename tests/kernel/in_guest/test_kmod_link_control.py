"""Link control on a module host (doc/ports.md, "Link control"): the module does it
itself (kmod/linkctl.c), held in the port, so an interface made again keeps it.  One
short test (CI minutes, one lab): suspend and resume, the interface deleted and made
again while suspended, delay, loss, clear; then frames queued by a delay when the vnet
is deleted and the module unloaded.  The vnetd side, with the longer measurements, is
tests/netns/test_link_control.py."""
from __future__ import annotations

import statistics

from kernel.in_guest.test_kmod_ports import VNET_KO, ok
from netns.test_link_control import link, pings, wait_port
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader


def test_link_control_in_the_module_survives_the_interface(lab, make_hosts):
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    # Suspended: nothing either way, counted by the module; the port stays attached.
    before = h2.counters()
    h2.vn("port-set", "97", r1.port, "--suspend")
    result, _ = pings(lab, r0, r1.ip, 3, 0.1, wait=1)
    assert result.transmitted == 3 and result.received == 0
    h2.wait_counters(before, {"drop:link-suspended": 3})
    # r1's interface deleted and made again (a container restarted): the module
    # attaches it by itself, still suspended, with no command.
    first = wait_port(h2, r1.port, lambda p: True)
    lab.remove(r1)
    wait_port(h2, r1.port, lambda p: p["state"] == "waiting")
    r1 = lab.vm("r1", h2.host, "", f"{r1.ip}/24", mac=r1.mac, plugged=False, port=r1.port)
    view = wait_port(h2, r1.port, lambda p: p["state"] == "attached")
    assert view["ifindex"] != first["ifindex"] and view["link"] == {"suspended": True}
    before = h2.counters()
    result, _ = pings(lab, r0, r1.ip, 3, 0.1, wait=1)
    assert result.received == 0
    h2.wait_counters(before, {"drop:link-suspended": 3})
    h2.vn("port-set", "97", r1.port, "--resume")
    lab.wait_ping(r0, r1.ip, timeout=60)
    # 50 ms of delay towards r1: the emulated guest's round trips vary, so a wider band.
    _, base = pings(lab, r0, r1.ip, 8, 0.05)
    h2.vn("port-set", "97", r1.port, "--delay", "50")
    _, slow = pings(lab, r0, r1.ip, 8, 0.05)
    added = statistics.median(slow) - statistics.median(base)
    print(f"median rtt {statistics.median(base):.2f} ms, with 50 ms delay {statistics.median(slow):.2f} ms")
    assert 40.0 <= added <= 90.0, (base, slow)
    # 50 % loss instead: about half of 40 pings lost (the band is 3.8 standard deviations).
    h2.vn("port-set", "97", r1.port, "--loss", "50", "--delay", "0")
    before = h2.counters()
    result, _ = pings(lab, r0, r1.ip, 40, 0.02, wait=1)
    lost = h2.counters().get("drop:link-loss", 0) - before.get("drop:link-loss", 0)
    print(f"40 pings through 50 % loss: {result.loss:.1f} % lost, link-loss {lost}")
    assert 20.0 <= result.loss <= 80.0
    assert wait_port(h2, r1.port, lambda p: True)["link"] == {"loss": 50, "suspended": False}
    # Cleared: no link control left in the module.
    h2.vn("port-set", "97", r1.port, "--clear")
    assert wait_port(h2, r1.port, lambda p: True)["link"] == {"suspended": False}
    lab.wait_ping(r0, r1.ip, timeout=60)
    # A 30 s delay on both ports holds each side's pings in the other's queue: deleting
    # the vnet counts them as tap-write-error, and unloading the module with frames
    # still queued is clean (the guest run fails on a kernel WARNING or leak).
    h1 = hosts[0]
    for h, vm in ((h1, r0), (h2, r1)):
        h.vn("port-set", "97", vm.port, "--delay", "30000")
    lab.run(r0, ["ping", "-n", "-q", "-c", "5", "-i", "0.02", "-W", "1", r1.ip])
    lab.run(r1, ["ping", "-n", "-q", "-c", "5", "-i", "0.02", "-W", "1", r0.ip])
    before = h2.counters()
    h2.vn("vnet-delete", "97")
    after = h2.counters()
    assert after.get("drop:tap-write-error", 0) - before.get("drop:tap-write-error", 0) >= 1, after
    loader.rmmod()  # h1's port still holds r1's pings
    try:
        assert not kmod.module_loaded()
    finally:
        loader.insmod(VNET_KO)
    for h in hosts:
        ok(h, "set_address", h.ip)
        assert ok(h, "ports") == []
