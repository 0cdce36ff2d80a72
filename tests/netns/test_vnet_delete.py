"""Deleting and re-creating a vnet under running VMs, and creating one idempotently.

Written for either datapath (tests/kernel/in_guest imports them to run with the module):
results are read through `vn` and the datapath's own answers, never its internals."""
from __future__ import annotations

import sys

import pytest
from conftest import needs_root

from lab.vnethost import VnetHost, run_in_namespace
from vnet.control.controller import Controller
from vnet.errors import DatapathError
from vnet.model.state import StateStore
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

ID97 = str(VnetId.parse("97"))


def _call_datapath(state_dir: str, method: str, *args: object) -> int:
    """In a host's namespace: one Datapath call, past `vn` and its state file."""
    try:
        getattr(Controller(state_dir).datapath, method)(*args)
    except DatapathError as e:
        print(e.message, file=sys.stderr)
        return 1
    return 0


def call_datapath(h: VnetHost, method: str, *args: object) -> tuple[int, str]:
    """Ask `h`'s datapath directly, as a request that does not come through `vn` does;
    returns the exit status and the error message."""
    code, _, err = run_in_namespace(h.host.ns, _call_datapath, str(h.state_dir), method, *args,
                                    env={"VNET_DATAPATH": h.datapath})
    return code, err.strip()


def running(h: VnetHost) -> list[str]:
    return [v["id"] for v in h.vn_json("vnets")]


def refusal(bridge_too: bool, ports: str) -> str:
    what = "it and its bridge" if bridge_too else "it"
    return (f"vnet {ID97} has interfaces on bridge vnet97: {ports}; deleting {what} would cut them off "
            "from the vnet. Detach them first ('ip link set dev IF nomaster'), or delete anyway with --force\n")


def test_delete_refuses_to_cut_off_vms_and_recreating_puts_them_back(lab, make_hosts):
    a, b = make_hosts(2)
    for h in (a, b):
        h.vn("vnet-create", "97")
    va = lab.vm("a", a.host, "vnet97", "10.97.0.1/24")
    vc = lab.vm("c", a.host, "vnet97", "10.97.0.3/24")
    vb = lab.vm("b", b.host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(va, vb.ip, timeout=30)
    ports = ", ".join(sorted([va.port, vc.port]))
    for tool, args in [(a.vn, ["97"]), (a.vn, ["vnif97"]), (a.xm, ["97"])]:
        r = tool("vnet-delete", *args, check=False)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"{r.args[0]}: {refusal(False, ports)}"), r
    for tool in (a.vn, a.xm):
        r = tool("vnet-delete", "-b", "vnet97", check=False)
        assert (r.returncode, r.stderr) == (1, f"{r.args[0]}: {refusal(True, ports)}"), r
    # Refused means untouched: the datapath, the state and the bridge.
    assert running(a) == [ID97] and list(StateStore(a.state_dir).load().vnets) == [VnetId.parse("97")]
    assert {"vnif97", "vnet97", va.port, vc.port} <= lab.link_names(a.host)
    assert lab.ping(va, vb.ip, count=2).received == 2

    r = a.vn("vnet-delete", "--force", "97")
    assert r.stdout == (f"cut off from vnet {ID97}: {ports} (they stay on bridge vnet97; creating the "
                        "vnet again puts them back on it)\n"), r
    assert running(a) == [] and StateStore(a.state_dir).load().vnets == {}
    assert lab.ping(va, vb.ip, count=2, timeout=3).received == 0  # cut off indeed
    assert lab.ping(va, vc.ip, count=2).received == 2  # the bridge still joins them on the host

    a.vn("vnet-create", "97")  # on the bridge that kept them: they are on the vnet again
    lab.wait_ping(va, vb.ip, timeout=30)
    r = lab.ping(vc, vb.ip, count=3)
    assert r.received == 3 and r.duplicates == 0, r.output

    r = a.xm("vnet-delete", "-b", "-f", "97")
    assert r.stdout == (f"cut off from vnet {ID97}: {ports} (bridge vnet97 is deleted: they are on no "
                        "bridge now)\n"), r
    left = lab.link_names(a.host)
    assert "vnet97" not in left and "vnif97" not in left and {va.port, vc.port} <= left
    assert running(a) == [] and StateStore(a.state_dir).load().vnets == {}


def test_delete_without_other_interfaces_needs_no_force(lab, make_hosts):
    (h,) = make_hosts(1)
    h.vn("vnet-create", "97")
    h.vn("vnet-create", "-b", "br98", "98")
    r = h.vn("vnet-delete", "97")
    assert (r.stdout, r.stderr) == ("", "")
    assert "vnet97" in lab.link_names(h.host)  # the bridge stays without -b
    r = h.vn("vnet-delete", "-b", "br98")
    assert (r.stdout, r.stderr) == ("", "")
    assert "br98" not in lab.link_names(h.host) and running(h) == []


def test_exist_ok_accepts_the_same_vnet_and_names_what_differs(make_hosts):
    (h,) = make_hosts(1)
    h.vn("vnet-create", "-e", "etherip", "97")
    r = h.vn("vnet-create", "--exist-ok", "-e", "etherip", "97")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert running(h) == [ID97]
    r = h.vn("vnet-create", "--exist-ok", "-b", "br97", "97", check=False)
    assert (r.returncode, r.stderr) == (1, f"vn: vnet {ID97} exists with another config: bridge vnet97 (not "
                                           "br97), encapsulation etherip (not udp); delete it first to "
                                           "create it anew\n")
    r = h.vn("vnet-create", "-e", "etherip", "97", check=False)  # without it, still an error
    assert (r.returncode, r.stderr) == (1, f"vn: vnet {ID97} already exists\n")
    # Persisted but gone from the datapath: --exist-ok brings it back, and nothing else.
    assert call_datapath(h, "vnet_del", VnetId.parse("97")) == (0, "")
    assert running(h) == []
    h.vn("vnet-create", "--exist-ok", "-e", "etherip", "97")
    assert running(h) == [ID97]
    assert [v["encapsulation"] for v in h.vn_json("vnets")] == ["etherip"]
    assert [str(v) for v in StateStore(h.state_dir).load().vnets] == [ID97]
