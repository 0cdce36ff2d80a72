"""Who may do what: an ordinary user (really `nobody`) gets one line saying what is
needed, never a traceback, and still reads what is world-readable; a control socket
left by a killed vnetd is named as stale, with the fix."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, needs_root

from lab.lab import Lab
from lab.nodes import Host
from lab.vnethost import VnetHost
from vnet.model.config import VnetConfig
from vnet.model.state import StateStore
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

ID97 = str(VnetId.parse("97"))
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
#: Root, but without the capabilities vnetd needs (as in a container that lacks them).
ROOT_WITHOUT_NET = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin,-net_raw"]


def _reveal(paths: list[Path]) -> str:
    """Shell lines that, in a private mount namespace, let anyone reach `paths` (the
    Python installation) whose ancestors only root may enter (/root of pyenv): each such
    directory is covered by a tmpfs holding just the way to them, bound in again."""
    lines, holds = ["mount -t tmpfs vnet-nobody /mnt"], {}  # the holds' home, gone with the namespace
    for path in paths:
        parts = path.resolve().parts
        for i in range(1, len(parts) - 1):
            above, below = Path(*parts[:i + 1]), parts[i + 1]
            if os.stat(above).st_mode & stat.S_IXOTH:
                continue
            if above not in holds:
                holds[above] = f"/mnt/{len(holds)}"
                lines += [f"mkdir {holds[above]}", f"mount --bind {above} {holds[above]}",
                          f"mount -t tmpfs -o mode=0755 vnet-nobody {above}"]
            lines += [f"mkdir -p {above / below}", f"mount --bind {holds[above]}/{below} {above / below}"]
    return "\n".join(dict.fromkeys(lines))


def _as(lab: Lab, host: Host, who: list[str], python_args: list[str]) -> subprocess.CompletedProcess:
    """This Python with `python_args`, as `who`, in `host`'s namespace, on this source tree."""
    python = Path(sys.executable)
    script = _reveal([python.parent, Path(sys.prefix), Path(sys.base_prefix)]) + '\nexec "$@"\n'
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNET_")}
    env["PYTHONPATH"] = str(ROOT)
    return lab.run(host, ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh",
                          *who, str(python), *python_args], cwd=ROOT, env=env, timeout=120)


def run_as(lab: Lab, host: Host, who: list[str], argv: list[str]) -> subprocess.CompletedProcess:
    """`argv` (its first word a Python module run with this Python) as `who`, in `host`'s
    namespace, on this source tree."""
    return _as(lab, host, who, ["-m", *argv])


#: Runs each command of argv[1] (JSON) as `python -m` would, each in a child forked
#: from this interpreter after it imported what they use once: one Python start for all.
_RUN_ALL = """
import json, os, runpy, sys, tempfile
# What the commands import, but not the commands (runpy runs those as __main__).
import vnet.cli.listing, vnet.control.controller, vnet.control.events, vnet.control.metrics
import vnet.datapath.kmod.client, vnet.datapath.kmod.loader, vnet.host.bringup, vnet.host.service
results = []
for argv in json.loads(sys.argv[1]):
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = list(argv)
        code = 0
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out.seek(0)
    err.seek(0)
    results.append([status, out.read().decode(), err.read().decode()])
print(json.dumps(results))
"""


def run_all_as(lab: Lab, host: Host, who: list[str], argvs: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Each of `argvs` as run_as runs it, but all from one Python start, which is what
    costs: seconds each in the module's test guest."""
    r = _as(lab, host, who, ["-c", _RUN_ALL, json.dumps(argvs)])
    assert r.returncode == 0, r
    return [subprocess.CompletedProcess(argv, code, out, err) for argv, (code, out, err) in zip(argvs, json.loads(r.stdout))]


@pytest.fixture
def host_dir():
    """A state directory as /var/lib/vnet is: root's, mode 0755 (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="vnet-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def one_line(r: subprocess.CompletedProcess, text: str) -> None:
    assert (r.returncode, r.stdout, r.stderr) == (1, "", text + "\n"), r


def test_unprivileged_commands_say_they_need_root(lab, make_hosts, host_dir):
    (h,) = make_hosts(1, start=False)
    with StateStore(host_dir).transaction() as state:
        state.add_vnet(VnetConfig.from_cli("97"))
    state_file = (host_dir / "state.sxp").read_text()

    vn = ["vnet.cli.vn", "--state-dir", str(host_dir)]
    locked = f"{host_dir}/lock: Permission denied: changing the vnet state needs root"
    one_line(run_as(lab, h.host, ROOT_WITHOUT_NET, ["vnet.datapath.vnetd", "--state-dir", str(host_dir)]),
             "Error: vnetd needs CAP_NET_ADMIN and CAP_NET_RAW, which this root process lacks "
             "(CAP_NET_ADMIN, CAP_NET_RAW)")
    *refused, listed = run_all_as(lab, h.host, NOBODY, [
        ["vnet.datapath.vnetd", "--state-dir", str(host_dir), "-a", h.ip],
        [*vn, "vnet-create", "98"],
        [*vn, "peer-add", "10.0.0.9"],
        [*vn, "vnet-delete", "97"],
        ["vnet.cli.xm", "--state-dir", str(host_dir), "vnet-create", str(EXAMPLES / "vnet98.sxp")],
        ["vnet.host.hook", "start", "--state-dir", str(host_dir)],
        [*vn, "vnet-list"],  # reading the world-readable state needs nothing
    ])
    for r, text in zip(refused, ["Error: vnetd needs root (or CAP_NET_ADMIN and CAP_NET_RAW)", f"vn: {locked}",
                                 f"vn: {locked}", f"vn: {locked}", f"xm: {locked}",
                                 "network-vnet: start needs root (or CAP_NET_ADMIN)"], strict=True):
        one_line(r, text)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, f"{ID97}\n", ""), listed
    assert (host_dir / "state.sxp").read_text() == state_file
    assert sorted(p.name for p in host_dir.iterdir()) == ["lock", "state.sxp"]  # nothing else made

    # With root's vnetd serving the directory: its socket is root's alone.
    VnetHost(lab, h.host, host_dir).start()
    sock = host_dir / "vnetd.sock"
    denied = f"permission denied on {sock}"
    for r, text in zip(run_all_as(lab, h.host, NOBODY, [[*vn, "vnets"], [*vn, "varp-flush"],
                                                        ["vnet.host.hook", "stop", "--state-dir", str(host_dir)]]),
                       [f"vn: {denied}: vn must run as root"] * 2 + [f"network-vnet: {denied}: network-vnet must run as root"],
                       strict=True):
        one_line(r, text)
    assert [v["id"] for v in VnetHost(lab, h.host, host_dir).vn_json("vnets")] == [ID97]


def test_a_stale_control_socket_is_named_stale(make_hosts):
    (h,) = make_hosts(1, datapath="vnetd")
    h.vn("vnet-create", "97")
    h.kill(signal.SIGKILL)
    sock = h.state_dir / "vnetd.sock"
    assert sock.exists()
    stale = f"{sock} is a stale control socket: the vnetd that made it is gone"
    r = h.vn("vnets", check=False)
    one_line(r, f"vn: vnetd is not running ({stale}); start it with 'vnetd' (it replaces the stale "
                "socket), or select the host with --state-dir")
    r = h.vn("--datapath", "auto", "vnets", check=False)
    one_line(r, f"vn: vnetd is not running ({stale}) and the vnet kernel module is not loaded; start vnetd "
                "with 'vnetd' (it replaces the stale socket), or load the module with 'vn insmod' (or "
                "select the host with --state-dir)")
    h.start()  # as the message says
    assert [v["id"] for v in h.vn_json("vnets")] == [ID97]


#: Root of a user namespace that an ordinary user made (`unshare -Ur`, as a rootless
#: container is): uid 0 and every capability inside, `nobody` to the host.
USERNS_ROOT = [*NOBODY, "unshare", "--user", "--map-root-user"]


def test_root_of_an_unprivileged_user_namespace_cannot_use_vnetd(lab, make_hosts, host_dir):
    """Root of a user namespace reaches neither the state nor root's vnetd: in the host's
    network namespace, or in one of its own (which the socket file does not care
    about).  The messages say that this root is not the host's.  A socket left open to
    everyone by mistake still serves only root: vnetd asks the kernel who connects."""
    (h,) = make_hosts(1, start=False)
    with StateStore(host_dir).transaction() as state:
        state.add_vnet(VnetConfig.from_cli("97"))
    state_file = (host_dir / "state.sxp").read_text()
    VnetHost(lab, h.host, host_dir).start()
    sock = host_dir / "vnetd.sock"
    vn = ["vnet.cli.vn", "--state-dir", str(host_dir)]
    note = "; root in a user namespace is not root of the host"
    denied = f"vn: permission denied on {sock}: vn must run as root{note}"
    locked = f"vn: {host_dir}/lock: Permission denied: changing the vnet state needs root{note}"
    commands = [[*vn, "vnets"], [*vn, "vif-add", "97", "aa:00:00:00:00:01"], [*vn, "peer-add", "10.0.0.9"],
                [*vn, "vnet-delete", "97"]]
    for who in (USERNS_ROOT, [*USERNS_ROOT, "--net"]):
        for r, text in zip(run_all_as(lab, h.host, who, commands), [denied, denied, locked, locked], strict=True):
            one_line(r, text)

    sock.chmod(0o666)
    own_dir = host_dir / "own"  # a state directory of its own, to get as far as the socket
    own_dir.mkdir(mode=0o777)
    own_dir.chmod(0o777)
    socket_only = [[*vn, "vnets"], [*vn, "vif-add", "97", "aa:00:00:00:00:01"],
                   [*vn, "--socket", str(sock), "--state-dir", str(own_dir), "peer-add", "10.0.0.9"]]
    for r in run_all_as(lab, h.host, USERNS_ROOT, socket_only):
        one_line(r, "vn: vnetd accepts commands from root only")
    assert (host_dir / "state.sxp").read_text() == state_file
    listed = VnetHost(lab, h.host, host_dir)
    assert [v["id"] for v in listed.vn_json("vnets")] == [ID97]
    assert listed.vn_json("vifs")["entries"] == [] and listed.vn_json("peers") == []
