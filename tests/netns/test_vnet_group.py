"""A vnet with its own multicast group (config `(group ADDR)`, doc/config.md): its
floods and VARP messages reach the hosts that have the vnet and no other, where a
vnet on the shared group reaches every host.  Needs root; runs unchanged with the
kernel module in the test guest, and mixed module/vnetd hosts there
(tests/kernel/in_guest/test_kmod_group.py)."""
from __future__ import annotations

import time

import pytest
from conftest import needs_root

from lab.lab import Lab
from lab.traffic import send_frames
from lab.vnethost import VnetHost

pytestmark = [needs_root, pytest.mark.root]

GROUP_UDP, GROUP_RAW = "239.1.0.97", "239.1.0.98"
#: Broadcasts each VM sends: a few, counted exactly.
N = 5


def broadcasts(vm, n: int = N) -> list[bytes]:
    """n broadcast frames from the VM's own MAC, an EtherType no stack answers."""
    src = bytes.fromhex(vm.mac.replace(":", ""))
    return [b"\xff" * 6 + src + b"\x88\xb5" + i.to_bytes(2, "big") + bytes(44) for i in range(n)]


def own_group_scenario(lab: Lab, hosts: list[VnetHost]) -> None:
    """hosts[0] and hosts[1] have vnets 97 (UDP) and 98 (raw EtherIP), each on a group
    of its own, and 96 on the shared group; hosts[2] has vnet 99 only.  The floods of
    96 reach hosts[2] (dropped there as `unknown-vnet`), those of 97 and 98 do not;
    hosts[0] and hosts[1] receive each other's.  The listings name the groups."""
    a, b, c = hosts
    for h in (a, b):
        h.vn("vnet-create", "--group", GROUP_UDP, "97")
        h.vn("vnet-create", "-e", "etherip", "--group", GROUP_RAW, "98")
        h.vn("vnet-create", "96")
    c.vn("vnet-create", "99")
    listed = {v["id"][-4:]: v.get("group") for v in a.vn_json("vnets")}
    assert listed == {"0096": None, "0097": GROUP_UDP, "0098": GROUP_RAW}, listed
    persisted = {v["id"][-4:]: v.get("group") for v in b.vn_json("vnet-list")}
    assert persisted == listed, persisted
    vms = {}
    for n in (96, 97, 98):
        vms[n] = (lab.vm(f"a{n}", a.host, f"vnet{n}", f"10.{n}.0.1/24"),
                  lab.vm(f"b{n}", b.host, f"vnet{n}", f"10.{n}.0.2/24"))
        for vm in vms[n]:  # quiet VMs: no router solicitations in the counts below
            lab.sysctl(vm, {"net.ipv6.conf.all.disable_ipv6": "1"})
    # Reachable on every group: the first ARP request is a flood to the vnet's group.
    for x, y in vms.values():
        lab.wait_ping(x, y.ip, timeout=120)
    before = [rx_by_vnet(h) for h in (a, b)]
    before_c = c.counters()
    # Own groups first, the shared group last: once c has handled the last
    # broadcasts, it has handled (or never got) the earlier ones from the same host.
    for i in (0, 1):
        for n in (97, 98, 96):
            send_frames(lab, vms[n][i], "eth0", broadcasts(vms[n][i]))
    after_c = c.wait_counters(before_c, {"drop:unknown-vnet": 2 * N})
    grown = {k: after_c.get(k, 0) - before_c.get(k, 0) for k in
             ("udp-received", "etherip-received", "drop:unknown-vnet", "drop:other-group")}
    # c got vnet 96's broadcasts, and at most one announce of each of its two VMs (a
    # MAC unseen for 60 s is announced again with its next frame, in a slow guest);
    # any of vnet 97's (UDP) would add 2 * N, vnet 98's (raw) would show as etherip.
    assert grown["etherip-received"] == grown["drop:other-group"] == 0, grown
    assert grown["udp-received"] == grown["drop:unknown-vnet"], grown
    assert 2 * N <= grown["udp-received"] <= 2 * N + 2, grown
    # a and b received each other's broadcasts on every vnet, from the network.
    for h, was in zip((a, b), before):
        deadline = time.monotonic() + 60
        while True:
            grown = {n: rx - was[n] for n, rx in rx_by_vnet(h).items()}
            if min(grown.values()) >= N or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert min(grown.values()) >= N, (h.name, grown)


def rx_by_vnet(h: VnetHost) -> dict[str, int]:
    """Frames each vnet of the host received from the network, by short id."""
    return {v["id"][-2:]: v["rx_packets"] for v in h.vn_json("vnets")}


def test_own_group_keeps_floods_from_hosts_without_the_vnet(lab, make_hosts):
    own_group_scenario(lab, make_hosts(3))


def test_group_is_checked_restored_and_deleted_with_its_vnet(lab, make_hosts):
    """A bad group is refused naming the field; a vnetd restart brings the group back
    and it still carries floods; deleting the vnet leaves the group."""
    a, b = make_hosts(2)
    for bad, why in (("10.1.2.3", "not an IPv4 multicast address"), ("224.0.0.251", "224.0.0.0/24")):
        r = a.vn("vnet-create", "--group", bad, "97", check=False)
        assert r.returncode != 0 and "field 'group'" in r.stderr and why in r.stderr, r.stderr
    for h in (a, b):
        h.vn("vnet-create", "--group", GROUP_UDP, "97")
    if a.datapath == "vnetd":
        a.kill()
        a.start(timeout=600)  # a generous deadline: a loaded machine starts vnetd slowly
    assert [v.get("group") for v in a.vn_json("vnets")] == [GROUP_UDP]
    assert f"group {GROUP_UDP}" in a.vn("-br", "vnets").stdout
    x = lab.vm("x", a.host, "vnet97", "10.97.0.1/24")
    y = lab.vm("y", b.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(x, y.ip, timeout=120)
    joined = lab.run(a.host, ["ip", "maddress", "show", "dev", "eth0"]).stdout
    assert GROUP_UDP in joined, joined
    a.vn("vnet-delete", "--force", "97")
    joined = lab.run(a.host, ["ip", "maddress", "show", "dev", "eth0"]).stdout
    assert GROUP_UDP not in joined, joined
