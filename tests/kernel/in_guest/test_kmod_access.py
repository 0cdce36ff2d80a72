"""Durability and access on the module: changes cut by a killed `vn` and a module
reload are whole or absent (the vnetd scenario, netns/test_durability.py, with the
module reloaded and the state restored as the restart), and root of a user namespace
changes only the vnets of network namespaces its user namespace owns (as WireGuard's
netlink does): never the host's, never another namespace's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from netns.test_durability import power_loss_scenario
from vnet.datapath.kmod import loader
from vnet.model.vnetid import VnetId

ROOT = Path(__file__).resolve().parents[3]
VNET_KO = Path(os.environ.get("VNET_KO") or loader.default_module_path())


def _reload_and_restore(h) -> None:
    """The module's restart: everything it held is gone, the state brings it back."""
    loader.rmmod()
    loader.insmod(VNET_KO)
    h.start()


def test_module_changes_survive_power_loss(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    counts = power_loss_scenario(h, tmp_path / "vn.log", changes=16, losses=2, restart=_reload_and_restore,
                                 seed=1606)
    print(counts)
    assert counts["restarts"] >= 1


#: Run as root: each case in a child that enters a namespace, becomes root of a new user
#: namespace (made by `nobody`, or by root) and tries the module.  unshare(CLONE_NEWUSER)
#: refuses a chrooted or threaded caller, and the guest runs the tests chrooted into the
#: host's file system: each child steps out to pid 1's root, unshares, steps back in.
USER_NAMESPACE_ROOT = r"""
import ctypes, json, os, subprocess, sys, tempfile, traceback
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
netns, root = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import sxp
from vnet.cli.vn import vn
from vnet.datapath.kmod import client as kmod
from vnet.errors import DatapathError
from vnet.model.config import VnetConfig
from vnet.model.vnetid import VnetId


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)


def become_userns_root(owner, own_net, ready, mapped):
    # Enter the lab host's namespace, become `owner` and unshare; the parent (root of
    # the host) writes the maps, as newuidmap does; then step back into the chroot.
    setns(f"/run/netns/{netns}")
    here = os.open("/", os.O_RDONLY)
    try:
        os.chroot("/proc/1/root")
    except PermissionError:
        pass
    if owner:
        os.setgroups([])
        os.setresgid(owner, owner, owner)
        os.setresuid(owner, owner, owner)
    if libc.unshare(CLONE_NEWUSER | (CLONE_NEWNET if own_net else 0)) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    os.write(ready, b"u")
    if os.read(mapped, 1) != b"m":
        raise RuntimeError("the parent did not map the user namespace")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    os.fchdir(here)
    os.chroot(".")
    os.chdir(root)


def attempt(fn):
    try:
        return ["ok", fn()]
    except DatapathError as e:
        return [e.code, e.message]


def vn_cli(args):
    # `vn` as a user runs it, in a child: its exit status and what it said.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 2)
        os.dup2(w, 1)
        try:
            vn.main(args=args, prog_name="vn")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out.decode()]


def case(owner, own_net, ready, mapped):
    become_userns_root(owner, own_net, ready, mapped)
    state_dir = tempfile.mkdtemp()
    c = kmod.KmodClient()
    if own_net:  # an underlay of its own, as a container's
        for args in (["link", "add", "va", "type", "veth", "peer", "name", "vb"],
                     ["addr", "add", "10.9.0.1/24", "dev", "va"], ["link", "set", "va", "up"]):
            subprocess.run(["ip", *args], check=True)
        c.set_address("10.9.0.1")
    out = {"uid": os.getuid(), "userns": os.readlink("/proc/self/ns/user"),
           "list": attempt(lambda: [str(sxp.child_value(r, "id")) for r in c.vnets()]),
           "add": attempt(lambda: c.vnet_add(VnetConfig.from_cli("9a"))),
           "delete": attempt(lambda: c.vnet_del(VnetId.parse("97"))),
           "peer": attempt(lambda: c.peer_add("10.0.0.9", 1798)),
           "vn": vn_cli(["--datapath", "kmod", "--state-dir", state_dir, "vnet-create", "9b"]),
           "after": attempt(lambda: [str(sxp.child_value(r, "id")) for r in c.vnets()])}
    try:
        setns(f"/run/netns/{netns}")
        out["setns"] = "ok"
    except OSError as e:
        out["setns"] = e.strerror
    return out


results = {}
for name, owner, own_net in (("nobody", 65534, False), ("root", 0, False), ("nobody-net", 65534, True)):
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            data = json.dumps(case(owner, own_net, ready_w, mapped_r))
        except BaseException:
            data = json.dumps({"error": traceback.format_exc()})
        os.write(w, data.encode())
        os._exit(0)
    for fd in (w, ready_w, mapped_r):
        os.close(fd)
    if os.read(ready_r, 1) == b"u":
        for name_, text in (("uid_map", f"0 {owner} 1"), ("gid_map", f"0 {owner} 1")):
            with open(f"/proc/{pid}/{name_}", "w") as f:
                f.write(text)
        os.write(mapped_w, b"m")
    os.close(mapped_w)
    os.close(ready_r)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    results[name] = json.loads(data)
print(json.dumps(results))
"""


def test_user_namespace_root_reaches_only_the_vnets_of_its_own_network_namespaces(make_hosts):
    """Root of a user namespace, made by `nobody` or by root, in the host's network
    namespace: every module command is refused, saying why, and the host's vnets stay
    as they were.  In a network namespace of its own it manages that namespace's vnets
    (the module allows it, as WireGuard does) and sees none of the host's, and it cannot
    enter the host's namespace to reach them."""
    h, other = make_hosts(2)
    h.vn("vnet-create", "97")
    other.vn("vnet-create", "98")
    r = subprocess.run([sys.executable, "-c", USER_NAMESPACE_ROOT, h.host.ns, str(ROOT)], check=False,
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    need = ("Operation not permitted: the vnet module's commands need root (or CAP_NET_ADMIN); root in a user "
            "namespace has it only for the network namespaces its user namespace owns")
    for name in ("nobody", "root"):
        case = got[name]
        assert "error" not in case, case["error"]
        assert case["uid"] == 0 and case["userns"] != os.readlink("/proc/self/ns/user")
        assert case["list"] == case["after"] == ["EPERM", f"cannot list the vnet module's vnets: {need}"], case
        for op in ("add", "delete", "peer"):
            assert case[op][0] == "EPERM" and case[op][1].endswith(need), (op, case)
        assert case["vn"][0] == 1 and case["vn"][1].startswith("vn: ") and case["vn"][1].endswith(f"{need}\n"), case
        assert case["setns"] == "Operation not permitted"
    own = got["nobody-net"]
    assert "error" not in own, own["error"]
    assert own["list"] == ["ok", []], own  # none of the host's vnets
    assert own["add"] == ["ok", None] and own["peer"][0] != "EPERM", own
    assert own["delete"][0] == "ENOENT", own  # the host's 97 is not there to delete
    assert own["vn"] == [0, ""], own
    assert own["after"] == ["ok", [str(VnetId.parse("9a")), str(VnetId.parse("9b"))]], own
    assert own["setns"] == "Operation not permitted"
    for host, vid in ((h, "97"), (other, "98")):
        assert [v["id"] for v in host.vn_json("vnets")] == [str(VnetId.parse(vid))]
        assert host.vn_json("peers") == []
