"""Named network namespaces: creating, entering and removing them, reaching into them.

Everything the lab builds lives in namespaces named like iproute2's (bind mounts in
``/run/netns``).  This module holds the operations on one namespace that the rest
of the lab is built from, and the signal guard that makes the multi-step ones
atomic with respect to Ctrl-C.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as _pyroute2_netns

__all__ = [
    "NETNS_DIR",
    "SignalGuard",
    "create_ns",
    "enter_ns",
    "guard",
    "install_signal_handlers",
    "list_ns",
    "ns_exists",
    "remove_ns",
    "rtnl",
    "run_in_ns",
    "write_sysctls",
]

#: Where pyroute2 (like iproute2) bind-mounts named namespaces.
NETNS_DIR = "/run/netns"


class SignalGuard:
    """Makes lab operations atomic with respect to SIGINT/SIGTERM.

    pyroute2 forks a helper for every namespace creation and every netns
    socket, and ``subprocess`` runs Python's at-fork hooks when a preexec_fn
    is used.  A signal handler that happens to run inside one of those hooks
    (logging registers one) has its KeyboardInterrupt printed and *dropped*
    by CPython, so Ctrl-C was sometimes simply lost.  An interrupt landing
    between "namespace created" and "namespace registered" would also leak
    the namespace.  So during such sections the signal is only recorded and
    re-delivered at the end.  A second signal while an operation holds it
    goes through at once (unless cleanup is running), so a hung operation can
    still be interrupted.  Handlers can only be swapped on the main thread;
    elsewhere this does nothing, and nothing is needed: Python runs signal
    handlers on the main thread only.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.depth = 0
        self.strict = 0
        self.owner = 0
        self.pending: list[int] = []
        self.saved: dict[int, Any] = {}

    @contextlib.contextmanager
    def hold(self, escapable: bool = True) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        outer = self.depth == 0
        if outer:
            self.owner = os.getpid()
            self.pending = []
            self.saved = {}
            for sig in self.SIGNALS:
                try:
                    self.saved[sig] = signal.signal(sig, self._on_signal)
                except (ValueError, OSError):
                    pass
        self.depth += 1
        self.strict += 0 if escapable else 1
        try:
            yield
        finally:
            self.depth -= 1
            self.strict -= 0 if escapable else 1
            if outer:
                for saved_sig, handler in self.saved.items():
                    with contextlib.suppress(ValueError, OSError, TypeError):
                        signal.signal(saved_sig, handler if handler is not None else signal.SIG_DFL)
                pending, self.pending = list(dict.fromkeys(self.pending)), []
                for signum in pending:
                    signal.raise_signal(signum)

    @property
    def interrupted(self) -> bool:
        return bool(self.pending)

    def _on_signal(self, signum: int, frame) -> None:
        if os.getpid() != self.owner:
            # A forked helper inherited this handler: die like the default
            # action would instead of unwinding a copy of the parent's stack.
            os._exit(128 + signum)
        handler = self.saved.get(signum)
        if handler == signal.SIG_IGN:
            return
        if not self.pending or self.strict:
            self.pending.append(signum)
            return
        self.pending = []
        if callable(handler):
            handler(signum, frame)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)


#: The one guard of this process: sections nest, whoever opens them.
guard = SignalGuard()


def install_signal_handlers() -> None:
    """Turn SIGINT/SIGTERM into exceptions so ``with Lab()`` unwinds.

    Python's default SIGTERM action kills the interpreter without running
    ``finally`` blocks or atexit hooks, which would strand namespaces; as
    SystemExit it unwinds like any exception.  SIGINT is reset to
    KeyboardInterrupt in case something set it to SIG_IGN.  Must be called
    from the main thread.

    The handlers raise only in the process that installed them.  pyroute2
    forks short-lived helpers (namespace creation, netns sockets) and
    SIGTERMs them when done; a helper that raised instead of dying would
    unwind a copy of *our* stack and run our ``finally`` blocks.  Forked
    copies therefore just exit, as the default action would.
    """
    owner = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() != owner:
            os._exit(128 + signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def list_ns() -> list[str]:
    """The names of all named namespaces on this machine."""
    return _pyroute2_netns.listnetns()


def ns_exists(name: str) -> bool:
    return name in list_ns()


def create_ns(name: str) -> None:
    """Create the named namespace ``name``."""
    _pyroute2_netns.create(name)


def remove_ns(name: str) -> None:
    """Unmount and unlink a named namespace; missing counts as removed."""
    try:
        _pyroute2_netns.remove(name)
    except FileNotFoundError:
        pass


def enter_ns(name: str) -> None:
    """preexec_fn body: switch the forked child into namespace ``name``.

    flags=0 matters: pyroute2's default (O_CREAT) would silently *create* a
    missing namespace - in the child, forking yet again - instead of failing.
    """
    _pyroute2_netns.setns(name, flags=0)


def run_in_ns(name: str, func: Callable[..., Any], *args: Any) -> Any:
    """Run ``func(*args)`` on a throwaway thread that has entered ``name``.

    /proc/sys/net shows the network namespace of the *calling thread*, and
    setns(CLONE_NEWNET) affects only the calling thread, so a short-lived
    thread is the cheapest way to touch a namespace's sysctls (or open a packet
    socket in it) without ever moving the caller's own thread and without
    forking a helper process.
    """
    box: dict[str, object] = {}

    def body() -> None:
        try:
            enter_ns(name)
            box["result"] = func(*args)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=body, name=f"netns:{name}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("result")


def _write_sysctls(values: list[tuple[str, str]]) -> None:
    for key, value in values:
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(value)


def write_sysctls(ns: str, values: Mapping[str, str]) -> None:
    """Write sysctls (dotted keys, ``net.ipv4.ip_forward``) inside namespace ``ns``."""
    run_in_ns(ns, _write_sysctls, list(values.items()))


@contextlib.contextmanager
def rtnl(ns: str) -> Iterator[IPRoute]:
    """An RTNL socket bound inside ``ns`` (flags=0: never create it).

    Sockets are opened per operation rather than cached: an open netlink
    socket pins its namespace, and cleanup must not depend on closing them.
    """
    with guard.hold():
        ipr = IPRoute(netns=ns, flags=0)
        try:
            yield ipr
        finally:
            ipr.close()
