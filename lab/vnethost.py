"""A simulated vnet host: a lab namespace with its own state directory and datapath.

Shared by the demo, the benchmark and the tests, so all three drive a host the way a
user does: start the datapath (vnetd, or the kernel module's per-namespace setup),
then run `vn` commands against that host.

`vn` runs in a forked child of this process that has entered the host's namespace,
not in a new interpreter: the child inherits the imported modules, where a fresh
`python -m vnet.cli.vn` spends seconds importing pyroute2 (tens of seconds in the slow
test guest).  The child runs the same click command, with its output captured.
"""
from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

import vnet
from lab.lab import Host, Lab
from lab.netns import enter_ns, ns_exists
from lab.procs import in_this_interpreter, run_as_main
from vnet.cli.vn import vn as vn_command
from vnet.cli.xm import xm as xm_command
from vnet.control.controller import DATAPATH_KINDS, vnetd_answers
from vnet.control.protocol import VnetdClient
from vnet.control.restore import restore
from vnet.datapath.kmod import client as kmod
from vnet.datapath.vnetd.daemon import cli as vnetd_cli
from vnet.model.state import StateStore
from vnet.model.vnetid import VnetId

_LEN = 8  # bytes of the length prefix of a child's result


def _child(ns: str, env: dict[str, str], wfd: int, func: Callable[..., Any], args: tuple) -> NoReturn:
    """Body of the forked child: enter `ns`, run func(*args), send (status, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    status = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        sys.stdout, sys.stderr = out, err
        os.environ.update(env)
        enter_ns(ns)
        status = run_as_main(func, *args)
    except BaseException:
        traceback.print_exc(file=err)
    try:
        data = json.dumps([status, out.getvalue(), err.getvalue()]).encode()
        data = len(data).to_bytes(_LEN, "big") + data
        while data:
            data = data[os.write(wfd, data):]
    finally:
        os._exit(status & 0xFF)


def _collect(rfd: int, pid: int, timeout: float) -> tuple[bytes, int | None]:
    """The child's framed result, and its wait status if it ended without one.

    End of file cannot mark the end: a sibling forked by another thread at the same
    moment may hold a copy of the pipe's write end.  The length prefix does."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    status: int | None = None
    while len(buf) < _LEN or len(buf) < _LEN + int.from_bytes(buf[:_LEN], "big"):
        if select.select([rfd], [], [], 0.05)[0]:
            chunk = os.read(rfd, 65536)
            if chunk:
                buf += chunk
                continue
        if status is not None:  # it is gone and the pipe holds nothing more
            return bytes(buf), status
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st  # read once more: its last write may still be in the pipe
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(f"pid {pid}", timeout)
    if status is None:
        os.waitpid(pid, 0)
    return bytes(buf[_LEN:]), None


def run_in_namespace(ns: str, func: Callable[..., Any], *args: Any, env: dict[str, str] | None = None,
                     timeout: float = 30) -> tuple[int, str, str]:
    """Run func(*args) in a forked child inside network namespace `ns`; returns its exit
    status (func's int result, or a SystemExit code) and what it wrote to stdout and
    stderr.  An exception becomes status 1 with its traceback on stderr."""
    if not ns_exists(ns):
        raise FileNotFoundError(2, "no such network namespace", ns)
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            _child(ns, env or {}, wfd, func, args)
        os.close(wfd)
        wfd = -1
        try:
            data, status = _collect(rfd, pid, timeout)
        except BaseException:  # e.g. Ctrl-C while waiting: leave no child behind
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:  # unreaped, so the pid is still ours
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped already
            raise
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    if status is not None:
        return os.waitstatus_to_exitcode(status), "", f"child {pid} in {ns} ended without a result\n"
    code, out, err = json.loads(data)
    return code, out, err


def _run_command(command: click.Command, prog: str, args: list[str]) -> int:
    command.main(args=args, prog_name=prog)
    return 0


def _kmod_start(address: str, state_dir: str) -> int:
    """A host's share of the module: its underlay address and its persisted state."""
    with kmod.KmodClient() as dp:
        dp.set_address(address)
        _, _, failed = restore(dp, StateStore(Path(state_dir)).load())
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


class VnetHost:
    """A lab host with its own state directory and datapath, driven through `vn`.

    datapath "vnetd" runs a vnetd per host; "kmod" uses the vnet kernel module, which
    must already be loaded (it serves every namespace; each host only sets its own
    underlay address)."""

    def __init__(self, lab: Lab, host: Host, state_dir: Path, datapath: str = "vnetd") -> None:
        if datapath not in DATAPATH_KINDS:
            raise ValueError(f"datapath {datapath!r}: expected one of {', '.join(DATAPATH_KINDS)}")
        self.lab = lab
        self.host = host
        self.state_dir = state_dir
        self.datapath = datapath
        self.proc: subprocess.Popen | None = None
        self.log = state_dir / "vnetd.log"

    @property
    def ip(self) -> str:
        return self.host.ip

    @property
    def name(self) -> str:
        return self.host.name

    def start(self, *extra: str, timeout: float = 60.0, env: dict[str, str] | None = None,
              wrapper: Sequence[str] = ()) -> None:
        """Start the datapath: vnetd (waiting until it answers a request), or the
        module's underlay address and the persisted state of this host.

        `env` adds to vnetd's environment (VNET_FASTPATH_REFUSE, ...).  `wrapper` runs
        vnetd as a new program under that command (`setpriv` taking capabilities
        away, ...) instead of as a fork of this process: what a wrapper changes must
        be in place before vnetd's first line runs, and some of it (a bounding set)
        only takes effect at an exec."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.datapath == "kmod":
            if extra or env or wrapper:
                raise ValueError(f"vnetd options {extra}, environment and wrapper do not apply "
                                 "to the kernel module")
            code, _, err = run_in_namespace(self.host.ns, _kmod_start, self.ip, str(self.state_dir),
                                            timeout=timeout)
            if code != 0:
                raise RuntimeError(f"setting up the vnet module on {self.name} failed: {err}")
            return
        args = ["--state-dir", str(self.state_dir), "-a", self.ip, "-V", *extra]
        argv = [sys.executable, "-m", "vnet.datapath.vnetd", *args]
        with open(self.log, "a") as log:
            if wrapper:
                # This tree's vnet, whatever is installed: the one the test imported.
                tree = str(Path(vnet.__file__).resolve().parent.parent)
                path = os.pathsep.join(x for x in (tree, os.environ.get("PYTHONPATH")) if x)
                self.proc = self.lab.popen(
                    self.host, [*wrapper, *argv], stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env={**os.environ, **(env or {}), "PYTHONPATH": path})
            else:
                # Forked from this process rather than started as `python -m` (see
                # in_this_interpreter): the same daemon and command line, without an
                # interpreter start, which costs over 10 s in the emulated guest.
                run = in_this_interpreter(vnetd_cli.main, args, "vnetd")

                def preexec() -> NoReturn:
                    os.environ.update(env or {})
                    run()

                self.proc = self.lab.popen(self.host, argv, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, preexec_fn=preexec)
        sock = self.state_dir / "vnetd.sock"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vnetd on {self.name} exited: {self.log.read_text()}")
            if sock.exists() and vnetd_answers(sock):
                # It listens before it restores the state but answers only after: a
                # reply means the persisted vnets are back.
                VnetdClient(sock, timeout=max(1.0, deadline - time.monotonic())).vnets()
                return
            time.sleep(0.05)
        raise TimeoutError(f"vnetd on {self.name} did not start: {self.log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None, "only a vnetd host has a process to kill"
        self.proc.send_signal(sig)
        self.proc.wait(10)

    def vn(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run `vn ARGS` on this host; `env` adds to its environment (VNET_FORMAT, ...)."""
        return self._run(vn_command, "vn", args, check, env)

    def popen_vn(self, *args: str, **kw: Any) -> subprocess.Popen:
        """`vn ARGS` left running in the background (`vn capture`, `vn monitor`), with
        Popen's keywords for its streams; a fork of this process, as vnetd is."""
        argv = ["--state-dir", str(self.state_dir), "--datapath", self.datapath, *args]
        return self.lab.popen(self.host, [sys.executable, "-m", "vnet.cli.vn", *argv],
                              preexec_fn=in_this_interpreter(vn_command.main, argv, "vn"), **kw)

    def xm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run vnet's `xm` (its vnet-* commands) on this host, as `vn` is run."""
        return self._run(xm_command, "xm", args, check)

    def _run(self, command: click.Command, prog: str, args: tuple[str, ...],
             check: bool, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        argv = ["--state-dir", str(self.state_dir), *args]
        code, out, err = run_in_namespace(self.host.ns, _run_command, command, prog, argv,
                                          env={"VNET_DATAPATH": self.datapath, **(env or {})})
        r = subprocess.CompletedProcess([prog, *argv], code, out, err)
        if check and r.returncode != 0:
            raise RuntimeError(f"{prog} {' '.join(args)} on {self.name} failed ({r.returncode}): {r.stderr}")
        return r

    def vn_json(self, *args: str) -> Any:
        """The JSON of a listing: `vn ARGS --json` (its shapes: doc/schema/)."""
        return json.loads(self.vn(*args, "--json").stdout)

    def counters(self) -> dict[str, int]:
        """Counters and drops of `vn stats` merged, drops prefixed with 'drop:'."""
        listed = self.vn_json("stats")
        return {**listed["counters"], **{f"drop:{k}": v for k, v in listed["drops"].items()}}

    def varp_table(self, vnet: str | None = None) -> dict[str, str]:
        """The VARP cache as {MAC: care-of address}, of one vnet (an id) or of all."""
        wanted = None if vnet is None else str(VnetId.parse(vnet))
        return {e["vmac"]: e["addr"] for e in self.vn_json("varp")["entries"] if wanted in (None, e["vnet"])}

    def vif_macs(self) -> set[str]:
        """The MACs this host holds on any vnet (`vn vifs`)."""
        return {e["vmac"] for e in self.vn_json("vifs")["entries"]}

    def wait_counters(self, before: dict[str, int], grown: dict[str, int],
                      timeout: float = 60.0) -> dict[str, int]:
        """Wait until each counter named in `grown` has grown by at least that much since
        `before` (packets just sent have been handled), and return the counters then.
        The caller checks exact amounts: waiting for "at least" never hides a surplus."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.counters()
            short = {k: now.get(k, 0) - before.get(k, 0) for k, n in grown.items()
                     if now.get(k, 0) - before.get(k, 0) < n}
            if not short:
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: counters did not grow as expected within "
                                     f"{timeout:g} s: wanted {grown}, short ones grew by {short}")
            time.sleep(0.1)
