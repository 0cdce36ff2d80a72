"""A vnet device deleted behind the datapath's back (`ip link del vnif97`): the vnet
stops running there, as if the datapath had been asked to delete it, and the state
keeps it (it says what should exist): `vn vnets` says it does not run, and
`vn vnet-create --exist-ok` runs it again, on the bridge it left behind.  Both
datapaths; the module's port and unload: tests/kernel/in_guest/test_kmod_linkdel.py."""
from __future__ import annotations

import time

VNET97 = "0000:0000:0000:0000:0000:0000:0000:0097"


def wait_not_running(h, deadline: float = 60.0) -> None:
    """The datapath notices the deletion on its own (vnetd at its next tap read, the
    module at once): wait for the listing to lose the vnet."""
    end = time.monotonic() + deadline
    while h.vn_json("vnets"):
        assert time.monotonic() < end, f"{h.name} still lists the vnet whose device is gone"
        time.sleep(0.2)


def test_a_deleted_device_stops_its_vnet(lab, make_hosts):
    hosts = make_hosts(2)
    for h in hosts:
        h.vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    assert a.mac in hosts[0].vif_macs() and b.mac in hosts[0].varp_table()
    lab.run(hosts[0].host, ["ip", "link", "del", "vnif97"], check=True)
    lab.ping(b, a.ip, count=2)  # something for vnetd's tap to fail on
    wait_not_running(hosts[0])
    # Its tables went with it, as with vn vnet-delete.
    assert a.mac not in hosts[0].vif_macs() and b.mac not in hosts[0].varp_table()
    r = hosts[0].vn("vnets")
    assert r.stdout == ""
    assert f"vnet {VNET97} is kept in the state but does not run (no device vnif97)" in r.stderr, r.stderr
    assert hosts[0].vn("vnet-list").stdout.split() == [VNET97]
    assert hosts[1].vn("vnets").stderr == ""  # the other host is unaffected and says nothing
    hosts[0].vn("vnet-create", "--exist-ok", "97")
    assert [v["id"] for v in hosts[0].vn_json("vnets")] == [VNET97]
    assert hosts[0].vn("vnets").stderr == ""
    lab.wait_ping(a, b.ip, timeout=20)
    hosts[0].vn("vnet-delete", "--force", "97")
    assert hosts[0].vn("vnet-list").stdout == ""
