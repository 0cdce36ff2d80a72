"""Network-namespace topology builder for vnet's tests, demo and benchmarks.

vnet joins Linux hosts into private Ethernet LANs.  Exercising that for real
would need several machines, so the lab fakes them: every "host", "switch",
"router" and "VM" is a network namespace on this machine (a ``Node``, see
``lab.nodes``), wired together with veth pairs (``Link``s between ``Interface``s,
see ``lab.links``) and Linux bridges.  ``Lab`` builds them:

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
leaves no namespaces behind.  ``cleanup_stale`` (``lab.clean``) mops up after
runs that were killed outright (SIGKILL, OOM, power loss).

Running programs inside a namespace uses ``subprocess`` with a ``preexec_fn``
that enters the namespace (``lab.procs``); ``ping`` must be the iputils one
(Debian package ``iputils-ping``).
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import signal
import subprocess
import threading

from lab.clean import cleanup_stale, kill_pids, pids_in_namespaces
from lab.links import Interface, Link, split_cidr
from lab.netns import (
    create_ns,
    guard,
    install_signal_handlers,
    ns_exists,
    remove_ns,
    rtnl,
    write_sysctls,
)
from lab.nodes import VM, Host, Node, NodeRef, Switch
from lab.ping import PingResult, parse_ping, ping_argv, wait_answer
from lab.procs import Processes

# The names tests, tools and benchmarks have always imported from here.
__all__ = [
    "VM",
    "Host",
    "Interface",
    "Lab",
    "Link",
    "Node",
    "NodeRef",
    "PingResult",
    "Switch",
    "cleanup_stale",
    "parse_ping",
]

log = logging.getLogger(__name__)


class Lab:
    """A set of namespaces wired into a topology, torn down as a unit.

    Use as a context manager.  Namespace names are ``f"{prefix}-{name}"``;
    the default prefix embeds our pid so parallel runs never collide and
    ``cleanup_stale`` can tell which leftovers are orphaned.  ``nodes`` holds
    the nodes by name, ``links`` every cable the lab laid and that still exists.
    """

    #: Seconds between SIGTERM and SIGKILL at cleanup.  A class attribute so
    #: tests can shorten it without widening the constructor.
    TERM_GRACE = 3.0
    #: Interval for polling a bridge that another process is going to create.
    POLL_INTERVAL = 0.05

    install_signal_handlers = staticmethod(install_signal_handlers)

    def __init__(self, prefix: str | None = None):
        self.prefix = prefix if prefix is not None else f"vl{os.getpid()}"
        if not self.prefix or "/" in self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(f"bad lab prefix {self.prefix!r}")
        self.namespaces: list[str] = []
        self.nodes: dict[str, Host | VM | Switch] = {}
        self.links: list[Link] = []
        self.errors: list[str] = []
        self._procs = Processes()
        self._lock = threading.RLock()
        self._closed = False
        # Cleanup must only ever run in the process that built the lab; see
        # cleanup() for the forked copies this guards against.
        self._owner_pid = os.getpid()
        atexit.register(self.cleanup)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- bookkeeping -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("lab has been cleaned up")

    def _new_ns(self, name: str) -> str:
        """Create and register the namespace for node ``name``.

        IPv6 stays on, as on real machines: hosts and VMs send router and
        neighbour solicitations and MLD reports, and tests must tell that
        traffic from the traffic under test (and see that vnet keeps it
        where it belongs).
        """
        self._check_open()
        if not name or "/" in name or any(c.isspace() for c in name):
            raise ValueError(f"bad node name {name!r}")
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists in this lab")
        ns = f"{self.prefix}-{name}"
        if ns_exists(ns):
            # Never adopt (and later delete) a namespace that isn't ours.
            raise FileExistsError(errno.EEXIST, "network namespace exists", ns)
        # Register before creating, and let no Ctrl-C split the two (see
        # SignalGuard); cleanup tolerates a registered name never created.
        with guard.hold():
            with self._lock:
                self.namespaces.append(ns)
            create_ns(ns)
        Interface("lo", ns).set_up()
        return ns

    def ns_of(self, node: NodeRef) -> str:
        """The network namespace of ``node`` (a node or its name)."""
        if isinstance(node, str):
            found = self.nodes.get(node)
            return found.ns if found is not None else node
        return node.ns

    def _cable(self, ns: str, ifname: str, far: Node, far_base: str, bridge: str | None,
               address: str | None, *, mtu: int | None = None, mac: str | None = None) -> tuple[Link, str]:
        """Cable a new ``ifname`` in ``ns`` (addressed ``address``, up) to a new port,
        named after ``far_base``, of ``bridge`` in ``far`` (None: a far end left down
        and on no bridge).  Returns the link and the MAC ``ifname`` got; the caller's
        node takes the near end."""
        link = Link.create(ns, ifname, far.ns, far_base, mtu=mtu, mac=mac)
        with self._lock:
            self.links.append(link)
            far.intfs[link.intf2.name] = link.intf2
        if bridge is not None:
            link.intf2.configure(master=bridge)
        return link, link.intf1.configure(address)

    def _forget(self, link: Link) -> None:
        """Drop ``link`` from the lab and its ends from their nodes (it is gone)."""
        with self._lock:
            self.links = [x for x in self.links if x is not link]
            for node in self.nodes.values():
                for intf in link.intfs:
                    if node.intfs.get(intf.name) == intf:
                        del node.intfs[intf.name]

    # -- public helpers ----------------------------------------------------

    def link(self, intf: Interface) -> Link:
        """The lab's link that has ``intf`` as one end (``lab.link(host.eth0)``)."""
        for link in self.links:
            if intf in link.intfs:
                return link
        raise LookupError(f"no link of this lab ends at {intf}")

    def remove_link(self, link: Link) -> None:
        """Delete ``link`` (both ends) and forget it: a cable pulled for good."""
        link.remove()
        self._forget(link)

    def link_names(self, node: NodeRef) -> set[str]:
        """The names of the network devices in ``node``'s namespace."""
        with rtnl(self.ns_of(node)) as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    def sysctl(self, node: NodeRef, values: dict[str, str]) -> None:
        """Write sysctls (dotted keys) inside ``node``'s namespace."""
        write_sysctls(self.ns_of(node), values)

    # -- topology ----------------------------------------------------------

    def switch(self, name: str) -> Switch:
        """A LAN segment: bridge ``sw0`` (``Interface.add_bridge``) in its own namespace.

        A switch is not a host: IPv6 is off in its namespace before the bridge
        exists, so it sends nothing of its own (a host's stack would)."""
        sw = Switch(name=name, ns=self._new_ns(name))
        write_sysctls(sw.ns, {"net.ipv6.conf.all.disable_ipv6": "1",
                              "net.ipv6.conf.default.disable_ipv6": "1"})
        sw.intfs[sw.bridge] = Interface.add_bridge(sw.ns, sw.bridge)
        self.nodes[name] = sw
        return sw

    def host(self, name: str, switch: Switch, address: str, gateway: str | None = None,
             mtu: int = 1500, mac: str | None = None) -> Host:
        """A simulated machine with ``eth0`` cabled to ``switch``.  ``mac`` rebuilds a
        removed host with its NIC's address, so that the others' ARP caches stay right
        across a simulated reboot, as they do across a real one."""
        ip, _ = split_cidr(address)
        ns = self._new_ns(name)
        link, real_mac = self._cable(ns, "eth0", switch, name, switch.bridge, address, mtu=mtu, mac=mac)
        if gateway:
            with rtnl(ns) as ipr:
                ipr.route("add", dst="default", gateway=gateway)
        h = Host(name=name, ns=ns, ip=ip, address=address, gateway=gateway, addresses=[address],
                 mac=real_mac, intfs={"eth0": link.intf1})
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
            split_cidr(address)
        ns = self._new_ns(name)
        self.sysctl(ns, {"net.ipv4.ip_forward": "1"})
        links = [self._cable(ns, f"eth{i}", sw, f"{name}-{i}", sw.bridge, address)[0]
                 for i, (sw, address) in enumerate(legs)]
        first = legs[0][1]
        r = Host(name=name, ns=ns, ip=split_cidr(first)[0], address=first,
                 addresses=[a for _, a in legs], intfs={x.intf1.name: x.intf1 for x in links})
        self.nodes[name] = r
        return r

    def container(self, name: str, forwarding: bool = False) -> Host:
        """A bare namespace with only ``lo`` up: a container whose interfaces someone
        else makes (`vn topo apply` puts veths into it).  ``forwarding`` turns on IPv4
        forwarding (a router).  ``remove`` deletes it and ``container`` makes it anew."""
        ns = self._new_ns(name)
        if forwarding:
            self.sysctl(ns, {"net.ipv4.ip_forward": "1"})
        node = Host(name=name, ns=ns, ip="", address="")
        self.nodes[name] = node
        return node

    def vm(self, name: str, host: Host, bridge: str, address: str, mac: str | None = None,
           timeout: float = 10.0, port: str | None = None, plugged: bool = True) -> VM:
        """A guest namespace plugged into ``bridge`` inside ``host``, through a port
        named ``port`` (default ``v<name>``, or a free name derived from it).

        The bridge belongs to someone else (normally vnetd, started just
        before), hence the wait rather than creating it here.  With
        ``plugged=False`` the port is left down and on no bridge, as a hypervisor
        leaves a tap it made without a network script: plugging it into ``bridge``
        is then the admin's step.
        """
        ip, _ = split_cidr(address)
        # The VM's interface takes its LAN's MTU (1400 on a secure raw EtherIP vnet),
        # as a hypervisor configured for the vnet would set it.
        mtu = Interface.wait(host.ns, bridge, timeout, self.POLL_INTERVAL).mtu if plugged else None
        ns = self._new_ns(name)
        link, real_mac = self._cable(ns, "eth0", host, port or f"v{name}", bridge if plugged else None,
                                     address, mtu=mtu, mac=mac)
        v = VM(name=name, ns=ns, ip=ip, address=address, mac=real_mac, host=host, link=link,
               bridge=bridge, intfs={"eth0": link.intf1})
        self.nodes[name] = v
        return v

    def nic(self, vm: VM, host: Host, ifname: str, port: str, bridge: str | None = None,
            address: str | None = None) -> Interface:
        """Give ``vm`` another interface ``ifname`` (up, addressed ``address`` if given),
        cabled to ``port`` of ``host``: on ``bridge``, or on none (left down, for the
        caller to make it a vnet's port).  A lab VM with two links is a switch or a
        router in a topology."""
        self._check_open()
        link, _ = self._cable(vm.ns, ifname, host, port, bridge, address)
        vm.intfs[ifname] = link.intf1
        return link.intf1

    def move_vm(self, vm: VM, host: Host, bridge: str | None, timeout: float = 10.0,
                announce: bool = True) -> None:
        """Re-cable ``vm`` to ``bridge`` on ``host`` (simulated live migration).

        A veth pair dies as a whole, so the guest's eth0 is recreated with the
        same name, MAC and address; routes the caller added inside the VM are
        lost.  The new bridge is awaited before the old cable is pulled, so a
        failure there leaves the VM where it was.  Like QEMU after a migration,
        the VM then announces its MAC (RARP, several rounds) unless told not to.
        With `bridge` None the far end is left down and on no bridge, as `vm`
        leaves it with plugged=False: a container restarted, its veth made anew.
        """
        self._check_open()
        if bridge is not None:
            Interface.wait(host.ns, bridge, timeout, self.POLL_INTERVAL)
        self.remove_link(vm.link)
        vm.link, _ = self._cable(vm.ns, vm.ifname, host, f"v{vm.name}", bridge, vm.address,
                                 mac=vm.mac)
        vm.intfs[vm.ifname] = vm.link.intf1
        vm.host, vm.bridge = host, bridge or ""
        if announce:
            vm.eth0.announce(vm.mac)

    def remove(self, node: Host | VM, timeout: float = 5.0) -> None:
        """Pull the plug on a host or VM: SIGKILL every process inside it, delete its
        namespace (its interfaces and the far ends of its cables go with it) and
        forget it, so that a node of the same name can be built again.  A simulated
        power loss, for tests of what a host brings back when it boots."""
        self._check_open()
        ns = self.ns_of(node)
        with guard.hold(escapable=False):
            kill_pids(pids_in_namespaces([ns]), grace=timeout, first=signal.SIGKILL)
            # Its cables first: the kernel tears a namespace down later, in the
            # background, so the far ends would linger on the switch for a while.
            for link in [x for x in self.links if x.joins(ns)]:
                link.remove()
                self._forget(link)
            remove_ns(ns)
            with self._lock:
                self.namespaces.remove(ns)
                self.nodes.pop(node.name, None)

    # -- processes ---------------------------------------------------------

    def popen(self, node: NodeRef, argv: list[str], **kw) -> subprocess.Popen:
        """Start ``argv`` inside ``node``'s namespace; killed at cleanup.

        Each process gets its own session by default so that cleanup can
        signal the whole process group (catching shells' children) and so a
        terminal Ctrl-C reaches only us: the lab then shuts daemons down in
        order instead of them dying mid-test.
        """
        self._check_open()
        return self._procs.start(self.ns_of(node), argv, **kw)

    def run(self, node: NodeRef, argv: list[str], timeout: float = 30, check: bool = False,
            **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` in ``node`` to completion, capturing text output."""
        self._check_open()
        return self._procs.run(self.ns_of(node), argv, timeout, check, **kw)

    # -- ping ----------------------------------------------------------------

    def ping(self, node: NodeRef, address: str, count: int = 3, interval: float = 0.2,
             timeout: float = 10) -> PingResult:
        """Ping ``address`` from inside ``node`` with the system iputils ping."""
        cp = self.run(node, ping_argv(address, count, interval, timeout), timeout=timeout + 5)
        return parse_ping((cp.stdout or "") + (cp.stderr or ""), count)

    def wait_ping(self, node: NodeRef, address: str, timeout: float = 10) -> float:
        """Ping once at a time until ``address`` answers; return seconds waited.

        Used to wait for convergence (ARP, bridge learning, tunnel setup)
        without guessing a sleep.
        """
        return wait_answer(lambda: self.ping(node, address, count=1, interval=0.2, timeout=1),
                           f"{address} did not answer ping from {self.ns_of(node)}", timeout)

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
        with guard.hold(escapable=False):
            for msg in self._procs.stop_all(self.namespaces, self.TERM_GRACE):
                self._error(msg)
            for ns in reversed(self.namespaces):
                try:
                    remove_ns(ns)
                except Exception as exc:
                    self._error(f"removing netns {ns}: {exc!r}")
            self.namespaces.clear()
            self.links.clear()

    def _error(self, msg: str) -> None:
        log.warning("lab cleanup: %s", msg)
        self.errors.append(msg)
