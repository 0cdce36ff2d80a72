"""The programs a lab runs inside its namespaces, tracked so that teardown stops them.

A process left inside a namespace keeps the namespace, and its interfaces, alive
after the name is gone; so every program the lab starts is recorded here, and
stopping them all is the first step of tearing a lab down.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from lab.clean import kill_pids, pids_in_namespaces
from lab.netns import enter_ns, guard, ns_exists

__all__ = ["Processes", "signal_process"]


def signal_process(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to ``proc``, and to its whole process group if it leads one."""
    # killpg only while the leader is unreaped: until then its pid, and
    # so the group id, cannot have been reused by an unrelated process.
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if getattr(proc, "_lab_own_pgrp", False):
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


class Processes:
    """The processes started in a lab's namespaces that may still run."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def start(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        """``subprocess.Popen(argv, **kw)`` inside namespace ``ns``, in a session of
        its own unless ``start_new_session=False`` is given (see ``Lab.popen``)."""
        if not ns_exists(ns):
            # setns failing in preexec_fn surfaces only as an opaque
            # SubprocessError; say what is actually wrong.
            raise FileNotFoundError(errno.ENOENT, "no such network namespace", ns)
        user_preexec = kw.pop("preexec_fn", None)

        def preexec() -> None:
            enter_ns(ns)
            if user_preexec is not None:
                user_preexec()

        kw.setdefault("start_new_session", True)
        with guard.hold():
            proc = subprocess.Popen(argv, preexec_fn=preexec, **kw)
            proc._lab_own_pgrp = bool(kw["start_new_session"])  # type: ignore[attr-defined]
            with self._lock:
                self._procs = [p for p in self._procs if p.poll() is None]
                self._procs.append(proc)
        return proc

    def run(self, ns: str, argv: list[str], timeout: float, check: bool,
            **kw) -> subprocess.CompletedProcess:
        """``start`` and wait: text output captured, ``input`` fed to stdin, the whole
        group killed after ``timeout`` seconds (TimeoutExpired then carries the output)."""
        stdin_data = kw.pop("input", None)
        if stdin_data is not None:
            kw.setdefault("stdin", subprocess.PIPE)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        proc = self.start(ns, argv, **kw)
        try:
            out, err = proc.communicate(stdin_data, timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_process(proc, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        cp = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check:
            cp.check_returncode()
        return cp

    def stop_all(self, namespaces: Sequence[str], grace: float) -> list[str]:
        """Stop every tracked process and anything else inside ``namespaces``:
        SIGTERM, up to ``grace`` seconds to exit, then SIGKILL.  Returns what went
        wrong, for the caller to report: teardown must not raise."""
        errors: list[str] = []
        try:
            with self._lock:
                procs, self._procs = self._procs, []
            for p in procs:
                signal_process(p, signal.SIGTERM)
            # Anything else still inside our namespaces: daemons that
            # double-forked out of their process group, or programs started
            # by code that didn't go through start().
            strays = [pid for pid in pids_in_namespaces(namespaces)
                      if pid not in {p.pid for p in procs}]
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
            for p in procs:
                if p.poll() is None:
                    signal_process(p, signal.SIGKILL)
            for p in procs:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    errors.append(f"pid {p.pid} survived SIGKILL")
            remaining = pids_in_namespaces(namespaces)
            if remaining:
                kill_pids(remaining, grace=max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            errors.append(f"killing processes: {exc!r}")
        return errors
