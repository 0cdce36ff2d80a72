"""What only the module has: mixed module/vnetd vnets, netlink errors, netdev
statistics, and unloading with vnets and traffic present."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from conftest import EXAMPLES
from pyroute2 import NetlinkError, NetNS

from lab.traffic import transfer
from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())


def test_mixed_vnet_module_and_vnetd(lab, make_hosts):
    sw = lab.switch("sw")
    mod = make_hosts(1, switch=sw, datapath="kmod")[0]
    daemon = make_hosts(1, switch=sw, first=2, datapath="vnetd")[0]
    for h in (mod, daemon):
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", mod.host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", daemon.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    for src, dst in ((a, b), (b, a)):
        r = lab.ping(src, dst.ip, count=3)
        assert r.received == 3 and r.duplicates == 0, r.output
    # TCP both ways: the module's super-frames to vnetd, vnetd's to the module.
    transfer(lab, a, b, "tcp", 2 << 20)
    transfer(lab, b, a, "tcp", 2 << 20)
    varp = mod.varp_table()
    assert varp[b.mac] == daemon.ip
    varp = daemon.varp_table()
    assert varp[a.mac] == mod.ip


def vnet97_on_two_hosts(lab, make_hosts):
    """Two module hosts with vnet 97 and a VM on each: (hosts, vm on host 0, vm on host 1)."""
    hosts = make_hosts(2)
    for h in hosts:
        h.vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    return hosts, a, b


def test_tcp_between_module_hosts_intact(lab, make_hosts):
    hosts, a, b = vnet97_on_two_hosts(lab, make_hosts)
    lab.wait_ping(a, b.ip, timeout=20)
    transfer(lab, a, b, "tcp", 8 << 20)
    transfer(lab, b, a, "tcp", 2 << 20)
    transfer(lab, a, b, "udp", 100)
    sender = hosts[0].vn_json("vnets")[0]
    assert sender["tx_bytes"] / sender["tx_packets"] > 1514, "no super-frames were sent"


def test_errors_come_back_with_a_message(lab, make_hosts):
    h = make_hosts(1)[0]
    h.vn("vnet-create", "97")
    r = h.vn("vnet-create", "-b", "other", "-v", "vnifx", "97", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr, r.stderr
    r = h.vn("vnet-create", "-s", "auth", "99", check=False)
    assert r.returncode != 0 and "security" in r.stderr, r.stderr
    r = h.vn("peer-delete", "10.9.9.9", check=False)
    assert r.returncode != 0 and "not a peer" in r.stderr, r.stderr
    r = h.vn("varp-mcaddr", "10.1.1.1", check=False)
    assert r.returncode != 0 and "multicast" in r.stderr, r.stderr
    # Nothing of the failed calls was kept.
    assert [v["id"] for v in h.vn_json("vnets")] == ["0000:0000:0000:0000:0000:0000:0000:0097"]
    with NetNS(h.host.ns, flags=0) as ipr:
        with pytest.raises(NetlinkError) as err:
            ipr.link("add", ifname="vnif5", kind="vnet")
        assert err.value.code == errno.EOPNOTSUPP


def test_counters_in_netdev_statistics(lab, make_hosts):
    hosts, a, b = vnet97_on_two_hosts(lab, make_hosts)
    assert lab.ping(a, b.ip, count=5, interval=0.2).received == 5
    listed = hosts[1].vn_json("vnets")[0]
    with NetNS(hosts[1].host.ns, flags=0) as ipr:
        link = ipr.get_links(ifname=listed["vnetif"])[0]
        stats = link.get_attr("IFLA_STATS64")
    assert stats["rx_packets"] >= 5 and stats["tx_packets"] >= 5
    assert listed["rx_packets"] >= stats["rx_packets"] - 2
    assert hosts[1].counters()["udp-received"] >= 5


#: Unload/load cycles: 3 in CI (its 15 minutes); ``VNET_RELOADS=50`` (or more) for a long run.
RELOADS = int(os.environ.get("VNET_RELOADS", "3"))


def test_unload_and_load_repeatedly_with_vnets_and_traffic(lab, make_hosts):
    hosts = make_hosts(2)
    for h in hosts:
        h.vn("vnet-create", "97")
        h.vn("vnet-create", "-e", "etherip", "-b", "br5", "-v", "vnif5", "5")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    c = lab.vm("c", hosts[0].host, "br5", "10.5.0.1/24")
    d = lab.vm("d", hosts[1].host, "br5", "10.5.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    lab.wait_ping(c, d.ip, timeout=20)
    traffic = [lab.popen(a, ["ping", "-q", "-i", "0.005", b.ip], stdout=subprocess.DEVNULL),
               lab.popen(d, ["ping", "-q", "-i", "0.005", "-b", "10.5.0.255"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)]
    try:
        for i in range(RELOADS):
            loader.rmmod()
            assert not kmod.module_loaded()
            # As on a real host: load, keep the underlay address, restore the vnets.
            out = hosts[0].vn("insmod", "-m", str(VNET_KO), "-a", hosts[0].ip).stdout
            assert "restored 2 of 2 vnets" in out, out
            hosts[1].start()  # another simulated host in the same kernel
            if i in (0, RELOADS - 1):
                lab.wait_ping(a, b.ip, timeout=20)
                lab.wait_ping(c, d.ip, timeout=20)
    finally:
        for p in traffic:
            p.terminate()
            p.wait(10)
    assert len(hosts[0].vn_json("vnets")) == 2
    assert "(address 10.0.0.1)" in (hosts[0].state_dir / "state.sxp").read_text()
