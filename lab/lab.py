"""Network-namespace topology builder for vnet's tests, demo and benchmarks.

vnet joins Linux hosts into private Ethernet LANs.  Exercising that for real
would need several machines, so this module fakes them: every "host",
"switch", "router" and "VM" is a network namespace on this machine, wired
together with veth pairs and Linux bridges.  The pieces:

* ``Lab.switch`` - a namespace holding one bridge ``sw0``: the physical LAN
  segment between simulated hosts.  Keeping the bridge in its own namespace
  means nothing the hosts do (vnetd's own bridges, multicast, ARP) can leak
  into the root namespace of the machine running the tests.
* ``Lab.host`` - a simulated machine with one NIC ``eth0`` on a switch.
* ``Lab.router`` - a namespace forwarding between switches, so the vnet
  tunnels can be tested across IP subnets.
* ``Lab.vm`` / ``Lab.move_vm`` - a guest attached to a bridge that vnetd (or
  the test) made inside a host, and its "live migration" to another host.

All netlink work is done with pyroute2; nothing shells out to ``ip``.  Every
namespace and process created is tracked and removed by ``Lab.cleanup``, which
runs from ``__exit__``, from ``atexit`` and (with
``Lab.install_signal_handlers``) on SIGINT/SIGTERM, so an interrupted test run
leaves no namespaces behind.  ``cleanup_stale`` mops up after runs that were
killed outright (SIGKILL, OOM, power loss).

Running programs inside a namespace uses ``subprocess`` with a ``preexec_fn``
that calls ``pyroute2.netns.setns``; ``ping`` must be the iputils one
(Debian package ``iputils-ping``).
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import fnmatch
import ipaddress
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence, Union

from pyroute2 import IPRoute, netns

__all__ = [
    "Lab",
    "Switch",
    "Host",
    "VM",
    "PingResult",
    "cleanup_stale",
    "parse_ping",
]

log = logging.getLogger(__name__)

#: Where pyroute2 (like iproute2) bind-mounts named namespaces.
NETNS_DIR = "/run/netns"
#: Linux limit on interface names (IFNAMSIZ - 1).
IFNAMSIZ = 15


# ---------------------------------------------------------------------------
# Node descriptions


@dataclass
class Switch:
    """A LAN segment: the bridge ``bridge`` inside namespace ``ns``."""

    name: str
    ns: str
    bridge: str = "sw0"


@dataclass
class Host:
    """A simulated machine (or router); ``ip`` is its first/primary address.

    ``addresses`` holds every CIDR address in leg order so routers, which have
    one per switch, can be described by the same type as plain hosts.
    """

    name: str
    ns: str
    ip: str
    address: str
    ifname: str = "eth0"
    gateway: str | None = None
    addresses: list[str] = field(default_factory=list)
    mac: str = ""


@dataclass
class VM:
    """A guest namespace whose ``eth0`` is cabled to ``port`` on ``host``.

    ``host``, ``port`` and ``bridge`` change when the VM is migrated with
    ``Lab.move_vm``; ``ns``, ``ip`` and ``mac`` never do, which is exactly the
    property migration tests want to check.
    """

    name: str
    ns: str
    ip: str
    address: str
    mac: str
    host: Host
    port: str
    bridge: str
    ifname: str = "eth0"


Node = Union[Host, VM, Switch, str]


@dataclass
class PingResult:
    """Summary of one iputils ``ping`` run.

    Duplicates are kept separately because they are the symptom of a
    forwarding loop or a double-delivering tunnel - a bug that a bare
    "received > 0" check would miss.
    """

    transmitted: int
    received: int
    duplicates: int
    output: str

    @property
    def ok(self) -> bool:
        return self.received > 0

    @property
    def loss(self) -> float:
        """Packet loss in percent, as ping computes it (duplicates excluded)."""
        if self.transmitted <= 0:
            return 100.0
        lost = max(self.transmitted - self.received, 0)
        return 100.0 * lost / self.transmitted


_PING_STATS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_DUPS = re.compile(r"\+(\d+) duplicates")


def parse_ping(output: str) -> PingResult:
    """Parse iputils ping output; missing statistics mean nothing was sent.

    ping prints no summary at all when it cannot even start (no route, bad
    address), so a zero result rather than an exception lets callers treat
    "unreachable" and "no answer" alike.
    """
    m = _PING_STATS.search(output)
    if not m:
        return PingResult(0, 0, 0, output)
    dups = _PING_DUPS.search(output)
    return PingResult(
        transmitted=int(m.group(1)),
        received=int(m.group(2)),
        duplicates=int(dups.group(1)) if dups else 0,
        output=output,
    )


# ---------------------------------------------------------------------------
# Namespace helpers


def _ns_exists(name: str) -> bool:
    return name in netns.listnetns()


def _enter_ns(name: str) -> None:
    """preexec_fn body: switch the forked child into namespace ``name``.

    flags=0 matters: pyroute2's default (O_CREAT) would silently *create* a
    missing namespace - in the child, forking yet again - instead of failing.
    """
    netns.setns(name, flags=0)


def _in_ns_thread(name: str, func, *args):
    """Run ``func(*args)`` on a throwaway thread that has entered ``name``.

    /proc/sys/net shows the network namespace of the *calling thread*, and
    setns(CLONE_NEWNET) affects only the calling thread, so a short-lived
    thread is the cheapest way to touch a namespace's sysctls without ever
    moving the caller's own thread (and without forking a helper process).
    """
    box: dict[str, object] = {}

    def body() -> None:
        try:
            netns.setns(name, flags=0)
            box["result"] = func(*args)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=body, name=f"netns:{name}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("result")


#: Gaps between the self-announce rounds after a migration, as QEMU sends them
#: (announce-initial 50 ms, step 100 ms, 5 rounds).
ANNOUNCE_GAPS = (0.05, 0.15, 0.25, 0.35, 0.45)


def _self_announce(ifname: str, mac: str, gaps: Sequence[float]) -> None:
    """Send RARP self-announcements from ``mac`` on ``ifname`` (run inside the VM ns).

    A hypervisor does this after moving a guest so that switches, and here the
    vnet, learn where the MAC went; a single frame could race the new port coming
    up, hence several rounds.
    """
    hw = bytes.fromhex(mac.replace(":", ""))
    rarp = (b"\xff" * 6 + hw + b"\x80\x35" + b"\x00\x01\x08\x00\x06\x04\x00\x03"
            + hw + bytes(4) + hw + bytes(4))
    rarp += bytes(60 - len(rarp))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for gap in gaps:
            time.sleep(gap)
            s.send(rarp)


def _write_sysctls(values: Sequence[tuple[str, str]]) -> None:
    for key, value in values:
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(value)


def _ns_inode(name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(os.path.join(NETNS_DIR, name))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _pids_in_namespaces(names: Sequence[str]) -> list[int]:
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


def _pid_alive(pid: int) -> bool:
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


def _kill_pids(pids: Sequence[int], grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL whatever is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = [p for p in pids if _pid_alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _pid_alive(p)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _remove_ns(name: str) -> None:
    """Unmount and unlink a named namespace; missing counts as removed."""
    try:
        netns.remove(name)
    except FileNotFoundError:
        pass


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
    for name in sorted(netns.listnetns()):
        if not fnmatch.fnmatchcase(name, prefix_glob) or "-" not in name:
            continue
        m = re.search(r"(\d+)$", name.split("-", 1)[0])
        if not m:
            continue
        pid = int(m.group(1))
        if pid <= 1 or pid == os.getpid() or _pid_alive(pid):
            continue
        stale.append(name)
    if not stale:
        return []
    _kill_pids(_pids_in_namespaces(stale), grace=1.0)
    removed = []
    for name in stale:
        try:
            _remove_ns(name)
            removed.append(name)
        except OSError as exc:
            log.warning("cleanup_stale: cannot remove netns %s: %s", name, exc)
    return removed


class _SignalGuard:
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


_guard = _SignalGuard()


# ---------------------------------------------------------------------------
# The lab


class Lab:
    """A set of namespaces wired into a topology, torn down as a unit.

    Use as a context manager.  Namespace names are ``f"{prefix}-{name}"``;
    the default prefix embeds our pid so parallel runs never collide and
    ``cleanup_stale`` can tell which leftovers are orphaned.
    """

    #: Seconds between SIGTERM and SIGKILL at cleanup.  A class attribute so
    #: tests can shorten it without widening the constructor.
    TERM_GRACE = 3.0
    #: Interval for polling a bridge that another process is going to create.
    POLL_INTERVAL = 0.05

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else f"vl{os.getpid()}"
        if not self.prefix or "/" in self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(f"bad lab prefix {self.prefix!r}")
        self.namespaces: list[str] = []
        self.nodes: dict[str, Host | VM | Switch] = {}
        self.errors: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.RLock()
        self._closed = False
        self._counter = 0
        # Cleanup must only ever run in the process that built the lab; see
        # cleanup() for the forked copies this guards against.
        self._owner_pid = os.getpid()
        atexit.register(self.cleanup)

    # -- context manager -------------------------------------------------

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- signals ---------------------------------------------------------

    @staticmethod
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

    # -- bookkeeping -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("lab has been cleaned up")

    def _new_ns(self, name: str) -> str:
        """Create and register the namespace for node ``name``.

        IPv6 is disabled (all/default) before any link exists so that no
        interface ever sends router/neighbour solicitations or MLD reports:
        packet captures in tests then show only the traffic under test.
        """
        self._check_open()
        if not name or "/" in name or any(c.isspace() for c in name):
            raise ValueError(f"bad node name {name!r}")
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists in this lab")
        ns = f"{self.prefix}-{name}"
        if _ns_exists(ns):
            # Never adopt (and later delete) a namespace that isn't ours.
            raise FileExistsError(errno.EEXIST, "network namespace exists", ns)
        # Register before creating, and let no Ctrl-C split the two (see
        # _SignalGuard); cleanup tolerates a registered name never created.
        with _guard.hold():
            with self._lock:
                self.namespaces.append(ns)
            netns.create(ns)
        self.sysctl(
            ns,
            {
                "net.ipv6.conf.all.disable_ipv6": "1",
                "net.ipv6.conf.default.disable_ipv6": "1",
            },
        )
        with self._ipr(ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return ns

    @contextlib.contextmanager
    def _ipr(self, ns: str) -> Iterator[IPRoute]:
        """An RTNL socket bound inside ``ns`` (flags=0: never create it).

        Sockets are opened per operation rather than cached: an open netlink
        socket pins its namespace, and cleanup must not depend on closing them.
        """
        with _guard.hold():
            ipr = IPRoute(netns=ns, flags=0)
            try:
                yield ipr
            finally:
                ipr.close()

    def _pick_ifname(self, ipr: IPRoute, base: str) -> str:
        """An interface name free in ``ipr``'s namespace, derived from ``base``.

        Falls back to a truncated base plus counter, since node names may be
        longer than IFNAMSIZ allows or collide with existing devices.
        """
        if len(base) <= IFNAMSIZ and not ipr.link_lookup(ifname=base):
            return base
        while True:
            self._counter += 1
            suffix = str(self._counter)
            cand = base[: IFNAMSIZ - len(suffix)] + suffix
            if not ipr.link_lookup(ifname=cand):
                return cand

    def _ns_of(self, node: Node) -> str:
        if isinstance(node, str):
            found = self.nodes.get(node)
            return found.ns if found is not None else node
        return node.ns

    @staticmethod
    def _split_cidr(address: str) -> tuple[str, int]:
        iface = ipaddress.ip_interface(address)
        if "/" not in address:
            raise ValueError(f"address {address!r} needs a prefix length (CIDR)")
        return str(iface.ip), iface.network.prefixlen

    def _veth(
        self,
        inner_ns: str,
        inner_name: str,
        outer_ns: str,
        outer_base: str,
        *,
        mtu: int | None = None,
        mac: str | None = None,
    ) -> str:
        """Create veth ``inner_name`` in ``inner_ns`` with its peer in ``outer_ns``.

        Both ends are created directly in their namespaces (never in the root
        namespace, even briefly), so parallel runs can't clash on names.
        Returns the outer end's name.
        """
        with self._ipr(outer_ns) as outer:
            outer_name = self._pick_ifname(outer, outer_base)
        peer: dict[str, object] = {"ifname": outer_name, "net_ns_fd": outer_ns}
        spec: dict[str, object] = {"ifname": inner_name, "kind": "veth", "peer": peer}
        if mtu is not None:
            peer["mtu"] = mtu
            spec["mtu"] = mtu
        if mac is not None:
            spec["address"] = mac
        with self._ipr(inner_ns) as inner:
            inner.link("add", **spec)
        return outer_name

    def _configure_inner(self, ns: str, ifname: str, address: str) -> str:
        """Address and bring up ``ifname`` in ``ns``; return its MAC."""
        ip, plen = self._split_cidr(address)
        with self._ipr(ns) as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=ip, prefixlen=plen)
            ipr.link("set", index=idx, state="up")
            return ipr.link("get", index=idx)[0].get_attr("IFLA_ADDRESS")

    def _enslave(self, ns: str, port: str, bridge: str) -> None:
        with self._ipr(ns) as ipr:
            br = ipr.link_lookup(ifname=bridge)
            if not br:
                raise LookupError(f"no bridge {bridge!r} in {ns}")
            idx = ipr.link_lookup(ifname=port)[0]
            ipr.link("set", index=idx, master=br[0], state="up")

    def _wait_bridge(self, ns: str, bridge: str, timeout: float) -> int:
        """Wait for ``bridge`` in ``ns``; return its MTU (its smallest port's)."""
        deadline = time.monotonic() + timeout
        with self._ipr(ns) as ipr:
            while not (found := ipr.link_lookup(ifname=bridge)):
                if _guard.interrupted:
                    # Leave the guarded section so the signal is delivered.
                    raise InterruptedError(f"interrupted waiting for bridge {bridge!r} in {ns}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"bridge {bridge!r} did not appear in {ns} within {timeout}s")
                time.sleep(self.POLL_INTERVAL)
            return ipr.link("get", index=found[0])[0].get_attr("IFLA_MTU")

    # -- public helpers ----------------------------------------------------

    def link_names(self, node: Node) -> set[str]:
        """The names of the network devices in ``node``'s namespace."""
        with self._ipr(self._ns_of(node)) as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    def sysctl(self, node: Node, values: dict[str, str]) -> None:
        """Write sysctls (dotted keys) inside ``node``'s namespace."""
        _in_ns_thread(self._ns_of(node), _write_sysctls, list(values.items()))

    # -- topology ----------------------------------------------------------

    def switch(self, name: str) -> Switch:
        """A LAN segment: bridge ``sw0`` in its own namespace.

        STP off and forward delay 0 so ports forward the moment they come up
        (tests would otherwise wait 30 s); multicast snooping off so vnet's
        multicast discovery floods like on a dumb hub instead of depending on
        IGMP state nobody is generating.
        """
        ns = self._new_ns(name)
        with self._ipr(ns) as ipr:
            ipr.link(
                "add",
                ifname="sw0",
                kind="bridge",
                br_stp_state=0,
                br_forward_delay=0,
                br_mcast_snooping=0,
            )
            ipr.link("set", index=ipr.link_lookup(ifname="sw0")[0], state="up")
        sw = Switch(name=name, ns=ns)
        self.nodes[name] = sw
        return sw

    def host(
        self,
        name: str,
        switch: Switch,
        address: str,
        gateway: str | None = None,
        mtu: int = 1500,
        mac: str | None = None,
    ) -> Host:
        """A simulated machine with ``eth0`` cabled to ``switch``.  ``mac`` rebuilds a
        removed host with its NIC's address, so that the others' ARP caches stay right
        across a simulated reboot, as they do across a real one."""
        ip, _ = self._split_cidr(address)
        ns = self._new_ns(name)
        port = self._veth(ns, "eth0", switch.ns, name, mtu=mtu, mac=mac)
        self._enslave(switch.ns, port, switch.bridge)
        real_mac = self._configure_inner(ns, "eth0", address)
        if gateway:
            with self._ipr(ns) as ipr:
                ipr.route("add", dst="default", gateway=gateway)
        h = Host(name=name, ns=ns, ip=ip, address=address, gateway=gateway, addresses=[address],
                 mac=real_mac)
        self.nodes[name] = h
        return h

    def router(self, name: str, legs: list[tuple[Switch, str]]) -> Host:
        """A namespace forwarding IPv4 between switches (eth0, eth1, ...).

        Only unicast is routed: no multicast routing daemon runs and
        mc_forwarding stays off, so vnet's multicast stays inside each
        segment, as it would across a real IP router.
        """
        if not legs:
            raise ValueError("a router needs at least one leg")
        for _, address in legs:
            self._split_cidr(address)
        ns = self._new_ns(name)
        self.sysctl(ns, {"net.ipv4.ip_forward": "1"})
        for i, (sw, address) in enumerate(legs):
            ifname = f"eth{i}"
            port = self._veth(ns, ifname, sw.ns, f"{name}-{i}")
            self._enslave(sw.ns, port, sw.bridge)
            self._configure_inner(ns, ifname, address)
        first = legs[0][1]
        r = Host(
            name=name,
            ns=ns,
            ip=self._split_cidr(first)[0],
            address=first,
            addresses=[a for _, a in legs],
        )
        self.nodes[name] = r
        return r

    def vm(
        self,
        name: str,
        host: Host,
        bridge: str,
        address: str,
        mac: str | None = None,
        timeout: float = 10.0,
    ) -> VM:
        """A guest namespace plugged into ``bridge`` inside ``host``.

        The bridge belongs to someone else (normally vnetd, started just
        before), hence the wait rather than creating it here.
        """
        ip, _ = self._split_cidr(address)
        # The VM's interface takes its LAN's MTU (1412 on a secure raw EtherIP vnet),
        # as a hypervisor configured for the vnet would set it.
        mtu = self._wait_bridge(host.ns, bridge, timeout)
        ns = self._new_ns(name)
        port = self._veth(ns, "eth0", host.ns, f"v{name}", mtu=mtu, mac=mac)
        self._enslave(host.ns, port, bridge)
        real_mac = self._configure_inner(ns, "eth0", address)
        v = VM(
            name=name,
            ns=ns,
            ip=ip,
            address=address,
            mac=real_mac,
            host=host,
            port=port,
            bridge=bridge,
        )
        self.nodes[name] = v
        return v

    def move_vm(self, vm: VM, host: Host, bridge: str, timeout: float = 10.0,
                announce: bool = True) -> None:
        """Re-cable ``vm`` to ``bridge`` on ``host`` (simulated live migration).

        A veth pair dies as a whole, so the guest's eth0 is recreated with the
        same name, MAC and address; routes the caller added inside the VM are
        lost.  The new bridge is awaited before the old cable is pulled, so a
        failure there leaves the VM where it was.  Like QEMU after a migration,
        the VM then announces its MAC (RARP, several rounds) unless told not to.
        """
        self._check_open()
        self._wait_bridge(host.ns, bridge, timeout)
        with self._ipr(vm.host.ns) as ipr:
            idx = ipr.link_lookup(ifname=vm.port)
            if idx:
                ipr.link("del", index=idx[0])
        with self._ipr(vm.ns) as ipr:
            # Deleting one veth end removes the peer too, but be certain the
            # name is free before reusing it.
            idx = ipr.link_lookup(ifname=vm.ifname)
            if idx:
                ipr.link("del", index=idx[0])
        port = self._veth(vm.ns, vm.ifname, host.ns, f"v{vm.name}", mac=vm.mac)
        self._enslave(host.ns, port, bridge)
        self._configure_inner(vm.ns, vm.ifname, vm.address)
        vm.host, vm.port, vm.bridge = host, port, bridge
        if announce:
            _in_ns_thread(vm.ns, _self_announce, vm.ifname, vm.mac, ANNOUNCE_GAPS)

    def remove(self, node: Host | VM, timeout: float = 5.0) -> None:
        """Pull the plug on a host or VM: SIGKILL every process inside it, delete its
        namespace (its interfaces and the far ends of its cables go with it) and
        forget it, so that a node of the same name can be built again.  A simulated
        power loss, for tests of what a host brings back when it boots."""
        self._check_open()
        ns = self._ns_of(node)
        with _guard.hold(escapable=False):
            pids = _pids_in_namespaces([ns])
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(self.POLL_INTERVAL)
            _remove_ns(ns)
            with self._lock:
                self.namespaces.remove(ns)
                self.nodes.pop(node.name, None)

    # -- processes ---------------------------------------------------------

    def popen(self, node: Node, argv: list[str], **kw) -> subprocess.Popen:
        """Start ``argv`` inside ``node``'s namespace; killed at cleanup.

        Each process gets its own session by default so that cleanup can
        signal the whole process group (catching shells' children) and so a
        terminal Ctrl-C reaches only us: the lab then shuts daemons down in
        order instead of them dying mid-test.
        """
        self._check_open()
        ns = self._ns_of(node)
        if not _ns_exists(ns):
            # setns failing in preexec_fn surfaces only as an opaque
            # SubprocessError; say what is actually wrong.
            raise FileNotFoundError(errno.ENOENT, "no such network namespace", ns)
        user_preexec = kw.pop("preexec_fn", None)

        def preexec() -> None:
            _enter_ns(ns)
            if user_preexec is not None:
                user_preexec()

        kw.setdefault("start_new_session", True)
        with _guard.hold():
            proc = subprocess.Popen(argv, preexec_fn=preexec, **kw)
            proc._lab_own_pgrp = bool(kw["start_new_session"])  # type: ignore[attr-defined]
            with self._lock:
                self._procs = [p for p in self._procs if p.poll() is None]
                self._procs.append(proc)
        return proc

    def run(
        self,
        node: Node,
        argv: list[str],
        timeout: float = 30,
        check: bool = False,
        **kw,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in ``node`` to completion, capturing text output."""
        stdin_data = kw.pop("input", None)
        if stdin_data is not None:
            kw.setdefault("stdin", subprocess.PIPE)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        proc = self.popen(node, argv, **kw)
        try:
            out, err = proc.communicate(stdin_data, timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        cp = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check:
            cp.check_returncode()
        return cp

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        # killpg only while the leader is unreaped: until then its pid, and
        # so the group id, cannot have been reused by an unrelated process.
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if getattr(proc, "_lab_own_pgrp", False):
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    # -- ping ----------------------------------------------------------------

    def ping(
        self,
        node: Node,
        address: str,
        count: int = 3,
        interval: float = 0.2,
        timeout: float = 10,
    ) -> PingResult:
        """Ping ``address`` from inside ``node`` with the system iputils ping.

        ``-n`` keeps ping from trying reverse DNS, which inside an isolated
        namespace would only add seconds of timeouts.
        """
        argv = [
            "ping", "-n",
            "-c", str(count),
            "-i", f"{interval:g}",
            "-W", "1",
            "-w", f"{timeout:g}",
            address,
        ]
        cp = self.run(node, argv, timeout=timeout + 5)
        return parse_ping((cp.stdout or "") + (cp.stderr or ""))

    def wait_ping(self, node: Node, address: str, timeout: float = 10) -> float:
        """Ping once at a time until ``address`` answers; return seconds waited.

        Used to wait for convergence (ARP, bridge learning, tunnel setup)
        without guessing a sleep.
        """
        start = time.monotonic()
        deadline = start + timeout
        last = ""
        while True:
            res = self.ping(node, address, count=1, interval=0.2, timeout=1)
            last = res.output
            now = time.monotonic()
            if res.ok:
                return now - start
            if now >= deadline:
                raise TimeoutError(
                    f"{address} did not answer ping from {self._ns_of(node)} "
                    f"within {timeout}s; last output:\n{last}"
                )
            if res.transmitted == 0:
                # Failed before sending (e.g. no route yet): don't spin.
                time.sleep(0.1)

    # -- teardown --------------------------------------------------------------

    def cleanup(self) -> None:
        """Kill our processes and delete our namespaces; safe to call twice.

        Never raises: teardown problems are logged and appended to
        ``self.errors`` so that they can't mask the exception that may be
        propagating from the ``with`` body.  Deleting a namespace deletes its
        interfaces, and a veth's peer goes with it, so no per-link teardown
        is needed.  Processes are killed first because any process left
        inside would keep the namespace, and its interfaces, alive.

        In any process other than the one that created the lab this is a
        no-op: pyroute2 forks helper processes, and one that gets a
        KeyboardInterrupt (a terminal Ctrl-C reaches the whole foreground
        process group) unwinds a copy of our stack, reaching ``__exit__`` and
        atexit.  Letting that copy tear down the lab would pull the
        namespaces out from under the real one mid-operation.
        """
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.cleanup)
        # Not escapable: an impatient second Ctrl-C must not abort cleanup
        # half way and strand namespaces; it is honoured once we're done.
        with _guard.hold(escapable=False):
            self._cleanup_processes()
            for ns in reversed(self.namespaces):
                try:
                    _remove_ns(ns)
                except Exception as exc:
                    self._error(f"removing netns {ns}: {exc!r}")
            self.namespaces.clear()

    def _error(self, msg: str) -> None:
        log.warning("lab cleanup: %s", msg)
        self.errors.append(msg)

    def _cleanup_processes(self) -> None:
        try:
            with self._lock:
                procs = list(self._procs)
                self._procs.clear()
            for p in procs:
                self._signal(p, signal.SIGTERM)
            # Anything else still inside our namespaces: daemons that
            # double-forked out of their process group, or programs started
            # by code that didn't go through popen().
            strays = [pid for pid in _pids_in_namespaces(self.namespaces)
                      if pid not in {p.pid for p in procs}]
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.TERM_GRACE
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
            for p in procs:
                if p.poll() is None:
                    self._signal(p, signal.SIGKILL)
            for p in procs:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._error(f"pid {p.pid} survived SIGKILL")
            remaining = _pids_in_namespaces(self.namespaces)
            if remaining:
                _kill_pids(remaining, grace=max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            self._error(f"killing processes: {exc!r}")
