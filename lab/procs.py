"""The programs a lab runs inside its namespaces, tracked so that teardown stops them.

A process left inside a namespace keeps the namespace, and its interfaces, alive
after the name is gone; so every program the lab starts is recorded here, and
stopping them all is the first step of tearing a lab down.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from lab.clean import kill_pids, pids_in_namespaces
from lab.netns import enter_ns, guard, ns_exists

__all__ = ["Processes", "in_this_interpreter", "signal_process", "script_argv"]


def script_argv(script: str, *args: str, unbuffered: bool = False) -> list[str]:
    """The command line that runs a small standard-library-only Python ``script``.

    ``-S`` skips site: no site-packages, no ``.pth`` hooks (the editable install's
    finder, ...).  A test's helper scripts need none of it, and in the emulated
    kernel-module guest site alone costs 2-4 s of every start against under 1 s
    without it.  Scripts that import the project or a third-party package must be
    run as ``[sys.executable, "-c", ...]`` instead."""
    return [sys.executable, "-S", *(["-u"] if unbuffered else []), "-c", script, *args]


def run_as_main(func: Callable[..., object], *args: object) -> int:
    """func(*args) as a program's main: its exit status (an int result, or a
    SystemExit's code; a SystemExit message and any exception's traceback go to
    sys.stderr, and make it 1)."""
    try:
        result = func(*args)
        return result if isinstance(result, int) else 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    return 1


def in_this_interpreter(func: Callable[..., object], *args: object) -> Callable[[], NoReturn]:
    """A ``preexec_fn`` that makes ``Lab.popen``'s child run ``func(*args)`` and exit,
    never exec'ing its argv (which then only names the program, for error messages).

    The child is a fork of this interpreter, so it starts with the project and its
    libraries imported: a fresh ``python -m vnet.datapath.vnetd`` spends over 10 s of
    the emulated kernel-module guest importing them, a fork milliseconds.  Everything
    else is a real process, as with exec: its own pid, session and namespace, the
    stdin/stdout/stderr Popen was given, tracked and killed at cleanup like any other.

    In the child: the descriptors inherited from this process are closed (as Popen's
    close_fds would have done after an exec; this includes Popen's exec-error pipe,
    whose end tells the parent the child has started), inherited objects are frozen
    out of the garbage collector (a collected inherited socket would close a number
    the child has reused), and signals, logging and the standard streams are put
    back to what a new interpreter has."""
    def body() -> NoReturn:
        status = 1
        try:
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            gc.freeze()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Popen set them back to the default for an exec
                signal.signal(sig, signal.SIG_IGN)
            signal.set_wakeup_fd(-1)
            root = logging.getLogger()
            for handler in list(root.handlers):
                root.removeHandler(handler)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115 (for the child's lifetime)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            status = run_as_main(func, *args)
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status & 0xFF)
    return body


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
