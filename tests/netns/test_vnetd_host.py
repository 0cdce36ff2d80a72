"""One simulated host: control errors reach the user, start-up guards, persistence, shutdown."""
from __future__ import annotations

import concurrent.futures
import signal
import sys

import pytest
from conftest import EXAMPLES, needs_root

pytestmark = [needs_root, pytest.mark.root]


def test_vn_without_vnetd_says_so(make_hosts):
    (h,) = make_hosts(1, start=False)
    h.state_dir.mkdir(parents=True)
    r = h.vn("vnets", check=False)
    assert r.returncode == 1 and r.stderr.startswith("vn: vnetd is not running"), r.stderr


def test_errors_reach_the_user_and_leave_no_state(make_hosts):
    (h,) = make_hosts(1)
    h.vn("vnet-create", str(EXAMPLES / "vnet97.sxp"))
    cases = [
        (["vnet-create", "97"], "already exists"),
        (["vnet-create", "-v", "x" * 16, "5"], "at most 15"),
        (["vnet-create", "-s", "auth", "6"], "needs a key"),
        (["vnet-create", "1"], "reserved for the physical network"),
        (["vnet-delete", "77"], "vnet not found: 77"),
        (["peer-delete", "10.9.9.9"], "10.9.9.9 is not a peer"),
        (["vif-add", "97", "aa:bb"], "invalid MAC address"),
        (["vif-delete", "97", "aa:00:00:00:00:01"], "no vif"),
        (["vif-add", "99", "aa:00:00:00:00:01"], "does not exist"),
        (["varp-mcaddr", "10.1.2.3"], "not a multicast address"),
        (["frobnicate"], "unknown command: frobnicate"),
        (["peer-add", "-p", "0", "10.0.0.9"], "0 is not in the range"),
    ]
    for args, needle in cases:
        r = h.vn(*args, check=False)
        assert r.returncode != 0, args
        assert "vn: " in r.stderr and needle in r.stderr, (args, r.stderr)
    assert [v["id"].endswith("0097") for v in h.vn_json("vnets")] == [True]
    state = h.vn("vnet-list").stdout.split()
    assert state == ["0000:0000:0000:0000:0000:0000:0000:0097"]


def test_original_command_strings_work_over_the_socket(make_hosts):
    """Reference T8: the exact bytes the original vn wrote."""
    (h,) = make_hosts(1)
    sock = h.state_dir / "vnetd.sock"
    t8 = ["(vnet.add (id 97) (vnetif vnif97) (security none))",
          "(vif.add (vnet 0000:0000:0000:0000:0000:0000:0000:0097) (vmac aa:00:00:11:00:12))",
          "(peer.add (addr 203.0.113.7))", "(varp.flush)"]
    lab_run = h.lab.run(h.host, [sys.executable, "-c",
                                 "import sys, sxp; from pathlib import Path; from vnet.control.protocol import request\n"
                                 "print(request(Path(sys.argv[1]), [sxp.parse_one(c) for c in sys.argv[2:]]))",
                                 str(sock), *t8])
    assert lab_run.returncode == 0, lab_run.stderr
    assert "aa:00:00:11:00:12" in h.vif_macs()
    assert h.vn_json("peers")[0]["addr"] == "203.0.113.7"
    bad = h.lab.run(h.host, [sys.executable, "-c",
                             "import sys, sxp; from pathlib import Path; from vnet.control.protocol import request\n"
                             "request(Path(sys.argv[1]), [sxp.parse_one('(vnet.add (id 97))')])", str(sock)])
    assert "already exists" in bad.stderr


def test_one_datapath_per_namespace_and_startup_options(lab, make_hosts):
    (h,) = make_hosts(1)
    other = lab.run(h.host, [sys.executable, "-m", "vnet.datapath.vnetd", "--state-dir", str(h.state_dir / "x"),
                             "-a", h.ip], timeout=20)
    assert other.returncode == 1 and "already running in this network namespace" in other.stderr
    h.vn("varp-mcaddr", "224.10.0.5")
    h.kill(signal.SIGTERM)
    (h.state_dir / "vnetd.log").write_text("")
    h.start("-m", "224.10.0.9")  # the command line wins over the persisted group
    assert h.vn_json("varp")["mcast_addr"] == "224.10.0.9"
    h.kill(signal.SIGTERM)
    (h.state_dir / "state.sxp").write_text("(vnet-state (version 1)")
    r = lab.run(h.host, [sys.executable, "-m", "vnet.datapath.vnetd", "--state-dir", str(h.state_dir), "-a", h.ip],
                timeout=20)
    assert r.returncode == 1 and "state.sxp" in r.stderr and "untouched" in r.stderr
    assert (h.state_dir / "state.sxp").read_text() == "(vnet-state (version 1)"
    h.start("--no-restore")
    assert h.vn_json("vnets") == []


def test_concurrent_vn_calls_lose_nothing(make_hosts):
    (h,) = make_hosts(1)
    addrs = [f"10.1.{i}.1" for i in range(12)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda a: h.vn("peer-add", a, check=False), addrs))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert sorted(p["addr"] for p in h.vn_json("peers")) == sorted(addrs)
    h.kill(signal.SIGKILL)
    h.start()
    assert sorted(p["addr"] for p in h.vn_json("peers")) == sorted(addrs)


def test_clean_shutdown_removes_what_it_made(lab, make_hosts):
    (h,) = make_hosts(1)
    h.vn("vnet-create", "97")
    h.vn("vnet-create", "-b", "br98", "98")
    lab.vm("a", h.host, "br98", "10.98.0.1/24")  # br98 keeps a VM port: it must stay
    assert {"vnif97", "vnet97", "vnif98", "br98"} <= lab.link_names(h.host)
    h.kill(signal.SIGTERM)
    assert h.proc.returncode == 0
    left = lab.link_names(h.host)
    assert not {"vnif97", "vnet97", "vnif98"} & left and "br98" in left
    assert not (h.state_dir / "vnetd.sock").exists()
    h.start()  # restart restores both and re-attaches to the surviving bridge
    assert {"vnif97", "vnet97", "vnif98", "br98"} <= lab.link_names(h.host)
    h.vn("vnet-delete", "-b", "vnif97")
    assert "vnet97" not in lab.link_names(h.host)
    assert [v["vnetif"] for v in h.vn_json("vnets")] == ["vnif98"]
