"""What a remote sender or a user-namespace root can make the module hold (issue 12):
MACs crafted to share one bucket of the old unkeyed hash, a flood of MACs on one vnet
against learning on another, and peers up to the cap."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from lab.collide import Flooder, colliding_macs, frame
from lab.netns import run_in_ns
from lab.traffic import send_udp
from vnet.datapath.kmod.family import (
    VNET_MAX_PEERS,
    VNET_MAX_VNET_MACS,
)
from vnet.model.vnetid import VnetId
from vnet.wire import formats as wire

ROOT = Path(__file__).resolve().parents[3]
#: Far above the longest chain 1024 buckets get from a few thousand random keys
#: (about 8); the old hash put every colliding MAC in one chain.
CHAIN_BOUND = 16


MARK = b"to the learned MAC"


def module_host_and_sender(lab, make_hosts):
    sw = lab.switch("sw")
    (h,) = make_hosts(1, switch=sw)
    sender = lab.host("x", sw, "10.0.0.9/24")
    return h, sender


def test_macs_colliding_under_the_old_hash_keep_chains_short(lab, make_hosts):
    h, sender = module_host_and_sender(lab, make_hosts)
    h.vn("vnet-create", "97")
    vnet = VnetId.parse("97").packed
    macs = colliding_macs(vnet, 1000)
    flood = Flooder(h, sender.ns)
    try:
        flood.send([frame(vnet, m) for m in macs])
        tables = flood.client.table_stats()
    finally:
        flood.close()
    assert tables["varp"]["entries"] == len(macs)
    assert tables["varp"]["longest_chain"] <= CHAIN_BOUND, tables
    assert tables["vifs"]["entries"] == 0, tables


def test_a_flooded_vnet_does_not_stop_learning_on_another(lab, make_hosts):
    """More random MACs on vnet 97 than a vnet may hold: it keeps its share and counts
    the rest, and a MAC on vnet 98 is still learned: a VM's unicast to it goes to its
    host, not flooded.  (Before the per-vnet caps, one vnet could fill the namespace's
    65,536 entries: shown with VNET_MAX_TABLE_MACS + 64 MACs, too slow for CI.)"""
    h, sender = module_host_and_sender(lab, make_hosts)
    h.vn("vnet-create", "97")
    h.vn("vnet-create", "98")
    v97, v98 = VnetId.parse("97"), VnetId.parse("98")
    vm = lab.vm("a", h.host, "vnet98", "10.98.0.1/24")
    known = b"\x02\x98\x00\x00\x00\x01"
    count = VNET_MAX_VNET_MACS + 64
    flooded = [b"\x02\x97" + i.to_bytes(4, "big") for i in range(count)]
    before = h.counters()
    flood = Flooder(h, sender.ns)
    try:
        flood.send([frame(v97.packed, m) for m in flooded])
        flood.send([frame(v98.packed, known)])
        per_vnet = {vid: n["varp"] for vid, n in flood.client.table_stats()["vnets"].items()}
    finally:
        flood.close()
    # The VM sends one datagram to the MAC learned on vnet 98: it goes to the host
    # that sent from that MAC (unlearned, it would be flooded to the group instead).
    lab.run(vm, ["ip", "neigh", "replace", "10.98.0.9", "lladdr", known.hex(":"), "dev", "eth0",
                 "nud", "permanent"], check=True)
    listener = run_in_ns(sender.ns, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        listener.bind(("0.0.0.0", wire.PORT))
        listener.settimeout(60)
        send_udp(lab, vm, "10.98.0.9", MARK, count=1)
        while True:
            try:
                got, _ = listener.recvfrom(65536)
            except TimeoutError:
                raise AssertionError("vnet 98 did not learn the MAC: the VM's unicast to it never "
                                     "reached the host that has it") from None
            if MARK in got:
                break
    finally:
        listener.close()
    after = h.counters()
    assert after.get("unknown-unicast-floods", 0) == before.get("unknown-unicast-floods", 0)
    assert per_vnet == {str(v97): VNET_MAX_VNET_MACS, str(v98): 1}, per_vnet
    assert after["drop:table-full"] - before.get("drop:table-full", 0) == count - VNET_MAX_VNET_MACS


PEERS_IN_A_USER_NAMESPACE = r"""
import ctypes, json, os, subprocess, sys

# `unshare --user --map-root-user --net`, done here because unshare(CLONE_NEWUSER)
# refuses a chrooted caller (EPERM), and the guest runs the tests chrooted into the
# host's file system: step out to the mount namespace's root (pid 1's), unshare, step
# back in.  Before any import that starts a thread: a threaded caller is refused too.
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
here = os.open("/", os.O_RDONLY)
try:
    os.chroot("/proc/1/root")
except PermissionError:  # pid 1 is not ours to look into: then neither is a chroot
    pass
if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER | CLONE_NEWNET)")
os.fchdir(here)
os.chroot(".")
os.chdir(sys.argv[3])
for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
    with open(f"/proc/self/{name}", "w") as f:
        f.write(text)

from vnet.datapath.kmod import client as kmod
from vnet.errors import DatapathError

run = lambda *a: subprocess.run(["ip", *a], check=True)
run("link", "add", "va", "type", "veth", "peer", "name", "vb")
run("addr", "add", "10.9.0.1/24", "dev", "va")
run("link", "set", "va", "up")
run("link", "set", "vb", "up")
extra = int(sys.argv[1])
out = {"userns": os.readlink("/proc/self/ns/user"), "added": 0, "refused": []}
with kmod.KmodClient() as c:
    c.set_address("10.9.0.1")
    for i in range(int(sys.argv[2]) + extra):
        addr = f"10.200.{i // 250}.{i % 250 + 1}"
        try:
            c.peer_add(addr, 1798)
            out["added"] += 1
        except DatapathError as e:
            out["refused"].append([addr, e.code, e.message])
    # At the cap a known peer may still change its port.
    c.peer_add("10.200.0.1", 1799)
    out["peers"] = [(p[1][1], p[2][1]) for p in c.peers()]
print(json.dumps(out))
"""


def test_a_user_namespace_root_adds_peers_up_to_the_cap():
    """PEER_ADD is allowed to root in a user namespace (GENL_UNS_ADMIN_PERM), with a
    network namespace of its own (`unshare --user --map-root-user --net`): it gets the
    cap, with a message that says it, and nothing beyond it is added."""
    extra = 5
    r = subprocess.run([sys.executable, "-c", PEERS_IN_A_USER_NAMESPACE, str(extra), str(VNET_MAX_PEERS),
                        str(ROOT)],
                       check=False, capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["userns"] != os.readlink("/proc/self/ns/user")
    assert out["added"] == VNET_MAX_PEERS
    assert [code for _, code, _ in out["refused"]] == [errno.errorcode[errno.ENOSPC]] * extra
    for addr, _, message in out["refused"]:
        assert message == f"cannot add peer {addr}: a host has at most {VNET_MAX_PEERS} peers"
    assert len(out["peers"]) == VNET_MAX_PEERS
    assert ("10.200.0.1", "1799") in [tuple(p) for p in out["peers"]]
