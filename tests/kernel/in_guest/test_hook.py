"""network-vnet with the kernel module: start restores a namespace's vnets into the
loaded module, stop takes them out without touching the state, and both are
idempotent; another simulated host in the same kernel is not disturbed."""
from __future__ import annotations

import os
from pathlib import Path

from netns.test_network_vnet import IN_SERVICE, PERSISTED, hook

from vnet.datapath.kmod import loader

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())


def test_network_vnet_start_stop_status_with_the_module(lab, make_hosts):
    hosts = make_hosts(2, start=False)
    for h in hosts:
        r = hook(h, "start", "-a", h.ip)
        assert "the vnet module is loaded" in r.stdout and f"underlay address {h.ip}" in r.stdout, r.stdout
        h.vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    state = hosts[0].state_dir / "state.sxp"
    kept = state.read_text()

    r = hook(hosts[0], "status")
    assert "running (kmod)" in r.stdout and IN_SERVICE in r.stdout, r.stdout
    r = hook(hosts[0], "start")
    assert "already running" in r.stdout, r.stdout

    r = hook(hosts[0], "stop")
    assert "took 1 vnets and 0 peers out of the vnet module" in r.stdout, r.stdout
    assert hosts[0].vn_json("vnets") == [] and state.read_text() == kept
    r = hook(hosts[0], "stop")
    assert r.returncode == 0 and "not running" in r.stdout, r.stdout
    r = hook(hosts[0], "status", check=False)
    assert r.returncode == 3 and PERSISTED in r.stdout, r.stdout
    assert len(hosts[1].vn_json("vnets")) == 1  # the other host keeps its vnet

    r = hook(hosts[0], "start")
    assert "restored 1 of 1 vnets" in r.stdout, r.stdout
    lab.wait_ping(a, b.ip, timeout=20)


def test_network_vnet_start_keeps_the_underlay_address_without_vnets(lab, make_hosts):
    """A host whose state holds only its underlay address (no vnets, peers or group yet)
    gets it back when the module is loaded again."""
    hosts = make_hosts(2, start=False)
    for h in hosts:
        hook(h, "start", "-a", h.ip)
    loader.rmmod()
    r = hook(hosts[0], "start", "-m", str(VNET_KO))
    assert f"underlay address {hosts[0].ip} (kept in {hosts[0].state_dir})" in r.stdout, r.stdout
    hosts[1].start()  # the other simulated host, in the same kernel
    for h in hosts:
        h.vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
