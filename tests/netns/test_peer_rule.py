"""The peer rule on a running host: `vn` refuses before anything changes, the datapath
refuses the same for requests that come another way, and a bad persisted peer is
reported, not restored.  Written for either datapath (tests/kernel/in_guest imports
them to run with the module, whose refusals are its own C code)."""
from __future__ import annotations

import ctypes
import os
import sys

import pytest
from conftest import needs_root
from netns.test_vnet_delete import call_datapath

from lab.vnethost import VnetHost, _run_command, run_in_namespace
from vnet.cli.vn import vn as vn_command
from vnet.control.controller import Controller
from vnet.control.restore import restore
from vnet.errors import DatapathError
from vnet.model.peer import MAX_PEERS, TOO_MANY
from vnet.model.state import State, StateStore

pytestmark = [needs_root, pytest.mark.root]

UNICAST = "a peer must be a unicast address"
LOOPBACK = "a peer must not be a loopback address"
OWN = "a peer must not be an address of this host"
IPV6 = "IPv6 underlays are not supported yet"


def refused(h: VnetHost) -> dict[str, str]:
    """Address -> why it cannot be a peer of `h` (10.0.0.x/24 on the lab switch)."""
    return {"224.1.1.1": UNICAST, "239.0.0.1": UNICAST, "0.0.0.0": UNICAST, "240.0.0.1": UNICAST,
            "255.255.255.255": UNICAST, "10.0.0.255": UNICAST, "127.0.0.1": LOOPBACK,
            "127.0.0.53": LOOPBACK, h.ip: OWN}


def test_vn_refuses_bad_peers_before_anything_changes(make_hosts):
    a, b = make_hosts(2)
    for addr, why in refused(a).items():
        r = a.vn("peer-add", addr, check=False)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"vn: cannot add peer {addr}: {why}\n"), addr
    r = a.vn("peer-add", "localhost", check=False)
    assert (r.returncode, r.stderr) == (1, f"vn: cannot add peer localhost (resolved to 127.0.0.1): {LOOPBACK}\n")
    for text in ("fe80::1", "fe80::1%eth0", "::1"):
        r = a.vn("peer-add", text, check=False)
        assert (r.returncode, r.stderr) == (1, f"vn: {text} is an IPv6 address: {IPV6}\n"), text
    assert a.vn_json("peers") == [] and StateStore(a.state_dir).load().peers == {}
    r = a.vn("peer-add", b.ip)
    assert (r.stdout, r.stderr) == ("", "")  # an address needs no word on what it is
    assert [p["addr"] for p in a.vn_json("peers")] == [b.ip]


def test_the_datapath_refuses_the_same_for_requests_from_elsewhere(make_hosts):
    (a,) = make_hosts(1)
    for addr, why in refused(a).items():
        assert call_datapath(a, "peer_add", addr, 1798) == (1, f"cannot add peer {addr}: {why}"), addr
    assert a.vn_json("peers") == []
    assert call_datapath(a, "peer_add", "10.0.0.9", 1798) == (0, "")
    assert [p["addr"] for p in a.vn_json("peers")] == ["10.0.0.9"]


def _add_peers(state_dir: str, count: int) -> int:
    """`count` peers straight into the datapath, as a script on the control socket or
    netlink would; prints how many went in, and each refusal on stderr."""
    dp = Controller(state_dir).datapath
    added = 0
    for i in range(count):
        addr = f"10.200.{i // 250}.{i % 250 + 1}"
        try:
            dp.peer_add(addr, 1798)
            added += 1
        except DatapathError as e:
            print(f"{e.code} {e.message}", file=sys.stderr)
    dp.peer_add("10.200.0.1", 1799)  # a known peer's new port is no new peer
    print(added)
    return 0


def test_a_host_has_at_most_max_peers(make_hosts):
    """Every broadcast is copied to each peer: the datapath stops at MAX_PEERS and says
    so, and vn says the same."""
    (a,) = make_hosts(1)
    code, out, err = run_in_namespace(a.host.ns, _add_peers, str(a.state_dir), MAX_PEERS + 2,
                                      env={"VNET_DATAPATH": a.datapath}, timeout=600)
    assert (code, out) == (0, f"{MAX_PEERS}\n"), err
    assert err.splitlines() == [f"ENOSPC cannot add peer 10.200.1.{i}: {TOO_MANY}" for i in (7, 8)]
    listed = {p["addr"]: p["port"] for p in a.vn_json("peers")}
    assert len(listed) == MAX_PEERS and listed["10.200.0.1"] == 1799
    r = a.vn("peer-add", "10.0.0.99", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"vn: cannot add peer 10.0.0.99: {TOO_MANY}\n")
    assert "10.0.0.99" not in {p["addr"] for p in a.vn_json("peers")}


def _restore(state_dir: str, peers: dict[str, int]) -> int:
    _, restored, failed = restore(Controller(state_dir).datapath, State(peers=peers))
    print(restored)
    for message in failed:
        print(message, file=sys.stderr)
    return 0


def test_a_bad_persisted_peer_is_reported_not_restored(make_hosts):
    (a,) = make_hosts(1)
    peers = {"10.0.0.9": 1798, "127.0.0.1": 1798, a.ip: 1798, "224.1.1.1": 1799}
    code, out, err = run_in_namespace(a.host.ns, _restore, str(a.state_dir), peers,
                                      env={"VNET_DATAPATH": a.datapath})
    assert (code, out) == (0, "1\n"), err
    assert err.splitlines() == [f"cannot restore peer {addr}: cannot add peer {addr}: {why}"
                                for addr, why in [("127.0.0.1", LOOPBACK), (a.ip, OWN), ("224.1.1.1", UNICAST)]]
    assert [p["addr"] for p in a.vn_json("peers")] == ["10.0.0.9"]


CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE, MS_BIND = 0x4000, 0x40000, 0x1000


def _vn_with_hosts(hosts: str, argv: list[str]) -> int:
    """`vn ARGV` with /etc/hosts replaced by the file `hosts`, in a mount namespace of
    this (forked) process alone, so names resolve as the test says."""
    libc = ctypes.CDLL(None, use_errno=True)
    for ok in (libc.unshare(CLONE_NEWNS) == 0,
               libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0,
               libc.mount(hosts.encode(), b"/etc/hosts", None, MS_BIND, None) == 0):
        if not ok:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return _run_command(vn_command, "vn", argv)


def test_a_name_is_resolved_once_and_vn_says_to_what(make_hosts, tmp_path):
    a, b = make_hosts(2)
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{b.ip} peer-b\n{a.ip} myself\nfe80::7 v6-only\n")

    def vn(*args: str) -> tuple[int, str, str]:
        return run_in_namespace(a.host.ns, _vn_with_hosts, str(hosts), ["--state-dir", str(a.state_dir), *args],
                                env={"VNET_DATAPATH": a.datapath})

    assert vn("peer-add", "peer-b") == (0, f"resolved peer-b to {b.ip}\n", "")
    assert vn("peer-add", "myself") == (1, "", f"vn: cannot add peer myself (resolved to {a.ip}): {OWN}\n")
    assert vn("peer-add", "v6-only") == (1, "", f"vn: peer v6-only resolves only to IPv6 (fe80::7): {IPV6}\n")
    assert vn("peer-add", "no-such-peer.invalid")[2].startswith("vn: cannot resolve peer 'no-such-peer.invalid': ")
    assert [p["addr"] for p in a.vn_json("peers")] == [b.ip]  # the address, not the name
    assert list(StateStore(a.state_dir).load().peers) == [b.ip]
    assert vn("peer-delete", "peer-b") == (0, f"resolved peer-b to {b.ip}\n", "")
    assert a.vn_json("peers") == []
