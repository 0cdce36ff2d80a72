"""`ip link del vnif97`: a vnet device deleted behind the module's back goes the way
`vn vnet-delete` takes it (its hash entry, tables and keys go, port 1798 is freed with
the last vnet), and the control model says that the persisted vnet no longer runs."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import EXAMPLES

from vnet.datapath.kmod import client as kmod
from vnet.datapath.kmod import loader
from vnet.wire.formats import PORT

VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())
VNET97 = "0000:0000:0000:0000:0000:0000:0000:0097"


def port_bound(lab, host) -> bool:
    """Whether a UDP socket of `host`'s namespace holds port 1798 (`ss -uln`)."""
    out = lab.run(host, ["ss", "-Huln", f"sport = :{PORT}"], check=True).stdout
    return bool(out.strip())


def wait_port_free(lab, host, deadline: float = 60.0) -> None:
    """The socket is closed by a work item after the device is gone: wait for it."""
    end = time.monotonic() + deadline
    while port_bound(lab, host):
        if time.monotonic() > end:
            out = lab.run(host, ["ss", "-uln"]).stdout
            raise AssertionError(f"port {PORT} still bound {deadline:.0f} s after the last vnet went:\n{out}")
        time.sleep(0.2)


def test_ip_link_del_frees_the_port_and_the_vnet(lab, make_hosts):
    (h,) = make_hosts(1)
    h.vn("vnet-create", "97")
    assert port_bound(lab, h.host)
    lab.run(h.host, ["ip", "link", "del", "vnif97"], check=True)
    wait_port_free(lab, h.host)
    assert h.vn_json("vnets") == [], "the module still lists the deleted vnet"
    r = h.vn("vnets")
    assert r.stdout == "", r.stdout
    assert f"vnet {VNET97} is kept in the state but does not run (no device vnif97)" in r.stderr, r.stderr
    assert h.vn("vnet-list").stdout.split() == [VNET97]  # the state keeps what should exist
    # Created again, with the bridge it left behind.
    h.vn("vnet-create", "--exist-ok", "97")
    assert port_bound(lab, h.host)
    assert [v["id"] for v in h.vn_json("vnets")] == [VNET97]
    assert "does not run" not in h.vn("vnets").stderr
    h.vn("vnet-delete", "97")
    wait_port_free(lab, h.host)


def test_ip_link_del_keeps_the_port_for_the_other_users(lab, make_hosts):
    (h,) = make_hosts(1)
    h.vn("vnet-create", "97")
    h.vn("vnet-create", "-e", "etherip", "-b", "br5", "-v", "vnif5", "5")
    h.vn("peer-add", "10.9.9.9")
    lab.run(h.host, ["ip", "link", "del", "vnif97"], check=True)
    lab.run(h.host, ["ip", "link", "del", "vnif5"], check=True)
    # The peer still needs the socket: wait until both deletions were seen, then check.
    end = time.monotonic() + 60
    while h.vn_json("vnets"):
        assert time.monotonic() < end, "the module still lists deleted vnets"
        time.sleep(0.2)
    assert port_bound(lab, h.host)
    h.vn("peer-delete", "10.9.9.9")
    wait_port_free(lab, h.host)


def test_ip_link_del_under_traffic_then_unload(lab, make_hosts):
    hosts = make_hosts(2)
    for h in hosts:
        h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    traffic = [lab.popen(a, ["ping", "-q", "-i", "0.002", b.ip], stdout=subprocess.DEVNULL),
               lab.popen(b, ["ping", "-q", "-i", "0.002", "-b", "10.97.0.255"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)]
    try:
        lab.run(hosts[0].host, ["ip", "link", "del", "vnif97"], check=True)
        wait_port_free(lab, hosts[0].host)
        hosts[0].vn("vnet-create", "--exist-ok", "97")
        lab.wait_ping(a, b.ip, timeout=30)
    finally:
        for p in traffic:
            p.terminate()
            p.wait(10)
    # Unload with the re-created vnet present, then load again for the tests after this one.
    loader.rmmod()
    assert not kmod.module_loaded()
    loader.insmod(VNET_KO)

