"""Removing what labs leave: processes inside namespaces, and namespaces of dead runs.

Every operation here is idempotent and tolerates finding nothing, so it can run at
the start of every test session, at the end of every lab, and again after either
was interrupted.
"""
from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import re
import signal
import time
from collections.abc import Sequence

from lab.netns import NETNS_DIR, list_ns, remove_ns

__all__ = ["cleanup_stale", "kill_pids", "pid_alive", "pids_in_namespaces"]

log = logging.getLogger(__name__)

#: Interval for polling processes that were told to go.
POLL_INTERVAL = 0.05
#: Seconds a SIGKILLed process may take to be gone before kill_pids returns anyway.
KILL_WAIT = 10.0


def _ns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(NETNS_DIR, name))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_namespaces(names: Sequence[str]) -> list[int]:
    """Processes (thread-group leaders) whose netns is one of ``names``.

    Needed because tracked processes may have forked daemons that escaped
    their process group; any process left inside would keep the namespace
    (and its interfaces) alive after the bind mount is gone.
    """
    wanted = {ino for ino in (_ns_inode(n) for n in names) if ino is not None}
    if not wanted:
        return []
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in wanted:
            found.append(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (zombies can't hold on to much)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def kill_pids(pids: Sequence[int], grace: float, first: int = signal.SIGTERM) -> None:
    """Send ``first``, wait up to ``grace`` seconds, then SIGKILL whatever is left and
    wait (up to KILL_WAIT seconds) until it is gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, first)
    deadline = time.monotonic() + grace
    left = [p for p in pids if pid_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        left = [p for p in left if pid_alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    # A killed process is not gone at once (a loaded machine takes a while to run its
    # exit): wait, so that callers may count on it, and on its namespace being free.
    deadline = time.monotonic() + KILL_WAIT
    while left and time.monotonic() < deadline:
        left = [p for p in left if pid_alive(p)]
        if left:
            time.sleep(POLL_INTERVAL)


def cleanup_stale(prefix_glob: str = "vl*") -> list[str]:
    """Remove namespaces left by lab runs whose owning process has died.

    A ``Lab`` whose process was SIGKILLed cannot clean up after itself.  Its
    namespace names carry the owner's pid (default prefix ``vl<pid>``), so a
    name matching ``prefix_glob`` whose part before the first "-" ends in the
    pid of a process that no longer exists is considered stale.  Names with no
    such pid are never touched, and neither are those of live runs, so this is
    safe to call at the start of every test session even with parallel runs.
    Processes still inside a stale namespace are killed first.  Returns the
    names removed.
    """
    stale = []
    for name in sorted(list_ns()):
        if not fnmatch.fnmatchcase(name, prefix_glob) or "-" not in name:
            continue
        m = re.search(r"(\d+)$", name.split("-", 1)[0])
        if not m:
            continue
        pid = int(m.group(1))
        if pid <= 1 or pid == os.getpid() or pid_alive(pid):
            continue
        stale.append(name)
    if not stale:
        return []
    kill_pids(pids_in_namespaces(stale), grace=1.0)
    removed = []
    for name in stale:
        try:
            remove_ns(name)
            removed.append(name)
        except OSError as exc:
            log.warning("cleanup_stale: cannot remove netns %s: %s", name, exc)
    return removed
