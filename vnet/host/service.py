"""vnetd as a background service of `network-vnet`: started detached, found again by
its control socket, stopped with SIGTERM.

vnetd itself stays a foreground program, which is what systemd's Type=notify and the
test lab want.  What a boot script needs on top lives here: a session of its own (so
the script's exit or terminal does not take it down), a log file, a pidfile, and
waiting until the control socket answers, because a VM manager started next must find
the vnets' bridges in place.  The socket is the authority on what runs: its peer
credentials (SO_PEERCRED) name the listening vnetd even if the pidfile is stale or was
never written (vnetd started by hand or by vnetd.service).
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import vnet
from vnet.control.protocol import VnetdClient
from vnet.errors import DatapathError
from vnet.host import notify

#: The directory holding the `vnet` package this code runs from (a source tree or
#: site-packages).
CODE_ROOT = Path(vnet.__file__).resolve().parent.parent
PIDFILE_NAME = "vnetd.pid"
LOG_NAME = "vnetd.log"
#: Lines of vnetd's log quoted when it fails to start.
LOG_TAIL = 12
POLL = 0.05
STOP_NEEDS = "permission denied; stop needs root"


def socket_pid(path: Path) -> int | None:
    """The pid of the process listening on the Unix socket `path`, or None if nothing
    listens there (no file, or a stale one left by a vnetd that was killed)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(str(path))
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except PermissionError:
        raise DatapathError("EPERM", f"permission denied on {path}: network-vnet must run as root") from None
    except OSError:
        return None
    finally:
        s.close()
    pid = struct.unpack("3i", creds)[0]
    return pid or None  # 0: the listener lives in a pid namespace we cannot see


def pid_alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie (a zombie holds no sockets or devices)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def is_vnetd(pid: int) -> bool:
    """True if `pid` runs vnetd (`vnetd` or `python -m vnet.datapath.vnetd`): a pidfile's pid may
    have been reused by an unrelated process since vnetd died."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(a == "vnet.datapath.vnetd" or os.path.basename(a) == "vnetd" for a in argv[:3])


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pidfile(path: Path, pid: int) -> None:
    """Write atomically, so a reader never sees a half-written number."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def running_pid(sock: Path, pidfile: Path) -> int | None:
    """The vnetd serving `sock`; else the pidfile's vnetd if it still runs (it may be
    starting up, or stuck before listening), so that `stop` can end it either way."""
    pid = socket_pid(sock)
    if pid is not None:
        return pid
    pid = read_pidfile(pidfile)
    return pid if pid is not None and pid_alive(pid) and is_vnetd(pid) else None


def _log_tail(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()[-LOG_TAIL:]
    except OSError:
        return ""
    return "".join(f"\n  {line}" for line in lines) or " (it wrote nothing)"


def _end(pid: int, timeout: float) -> bool:
    """SIGTERM `pid` and wait; SIGKILL it if it outlives `timeout`.  True if it ended on
    SIGTERM (vnetd then removed its taps, bridges and socket itself)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    except PermissionError:
        raise DatapathError("EPERM", f"cannot stop vnetd (pid {pid}): {STOP_NEEDS}") from None
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return True
            while pid_alive(pid):
                time.sleep(POLL)
            return False
        time.sleep(POLL)
    return True


def start(args: list[str], sock: Path, pidfile: Path, log: Path, timeout: float) -> int:
    """Start `vnetd ARGS` detached, wait until it serves `sock` with the persisted state
    restored, and return its pid.  On failure nothing is left running and the error
    quotes vnetd's log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    env = dict(os.environ)  # the vnetd started is the code of this network-vnet, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE_ROOT), env.get("PYTHONPATH")]))
    env.pop(notify.ENV, None)  # its READY=1 is not ours to give: we are ready once it answers
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vnet.datapath.vnetd", "--socket", str(sock), *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd="/", env=env, start_new_session=True)
    try:
        write_pidfile(pidfile, proc.pid)
        _wait_ready(proc, sock, log, offset, timeout)
    except BaseException:
        if proc.poll() is None:
            _end(proc.pid, 5.0)
        proc.wait()
        pidfile.unlink(missing_ok=True)
        raise
    return proc.pid


def _wait_ready(proc: subprocess.Popen, sock: Path, log: Path, offset: int, timeout: float) -> None:
    """Until vnetd answers a request: it listens before it restores the state and
    serves requests only after, so an answer means the vnets are back."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise DatapathError("ECHILD", f"vnetd exited with status {code}; from {log}:"
                                f"{_log_tail(log, offset)}")
        if socket_pid(sock) == proc.pid:
            VnetdClient(sock, timeout=max(1.0, deadline - time.monotonic())).vnets()
            return
        if time.monotonic() > deadline:
            raise DatapathError("ETIMEDOUT", f"vnetd did not answer on {sock} within {timeout:g} s; "
                                f"from {log}:{_log_tail(log, offset)}")
        time.sleep(POLL)


def stop(pid: int, pidfile: Path, timeout: float) -> bool:
    """End vnetd `pid` (see `_end`) and remove the pidfile if it named that vnetd."""
    clean = _end(pid, timeout)
    recorded = read_pidfile(pidfile)
    if recorded is None or recorded == pid or not pid_alive(recorded):
        pidfile.unlink(missing_ok=True)
    return clean
