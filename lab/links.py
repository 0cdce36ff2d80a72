"""Interfaces and the veth links between them.

An ``Interface`` is a network device named ``name`` in namespace ``ns``: it knows
nothing more, and every property asks netlink, because a device's index, MAC or MTU
may change under us (``Lab.move_vm`` recreates a VM's eth0, vnetd changes a bridge's
MTU).  A ``Link`` is a veth pair joining two interfaces in two namespaces; the
simulated cables of the lab (a host to its switch, a VM to its host's bridge) are
links.  Tests reach both through the nodes (``host.eth0``) and the lab
(``lab.links``, ``lab.link(intf)``) to change an MTU or pull a cable.
"""
from __future__ import annotations

import ipaddress
import itertools
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from lab.netns import guard, ns_exists, rtnl, run_in_ns

__all__ = ["ANNOUNCE_GAPS", "IFNAMSIZ", "Interface", "Link", "split_cidr"]

#: Linux limit on interface names (IFNAMSIZ - 1).
IFNAMSIZ = 15
#: Gaps between the self-announce rounds after a migration, as QEMU sends them
#: (announce-initial 50 ms, step 100 ms, 5 rounds).
ANNOUNCE_GAPS = (0.05, 0.15, 0.25, 0.35, 0.45)
#: The kernel's IFF_UP: the administrative state a device was set to.
_IFF_UP = 0x1
#: An IPv6 address whose duplicate address detection has not ended (linux/if_addr.h).
_IFA_F_TENTATIVE = 0x40

_suffixes = itertools.count(1)


def split_cidr(address: str) -> tuple[str, int]:
    """``"10.0.0.1/24"`` -> ``("10.0.0.1", 24)``; a bare address is refused, since
    the kernel would silently give it a /32 and the node could reach nobody."""
    iface = ipaddress.ip_interface(address)
    if "/" not in address:
        raise ValueError(f"address {address!r} needs a prefix length (CIDR)")
    return str(iface.ip), iface.network.prefixlen


def _free_ifname(ipr: IPRoute, base: str) -> str:
    """An interface name free in ``ipr``'s namespace, derived from ``base``.

    Falls back to a truncated base plus counter, since node names may be
    longer than IFNAMSIZ allows or collide with existing devices.
    """
    if len(base) <= IFNAMSIZ and not ipr.link_lookup(ifname=base):
        return base
    while True:
        suffix = str(next(_suffixes))
        cand = base[: IFNAMSIZ - len(suffix)] + suffix
        if not ipr.link_lookup(ifname=cand):
            return cand


def _self_announce(ifname: str, mac: str, gaps: Sequence[float]) -> None:
    """Send RARP self-announcements from ``mac`` on ``ifname`` (run inside its namespace).

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


@dataclass(frozen=True)
class Interface:
    """The network device ``name`` in namespace ``ns``, configured through netlink."""

    name: str
    ns: str

    def __str__(self) -> str:
        return f"{self.name} in {self.ns}"

    def _index(self, ipr: IPRoute) -> int:
        found = ipr.link_lookup(ifname=self.name)
        if not found:
            raise LookupError(f"no interface {self.name!r} in {self.ns}")
        return found[0]

    def _get(self) -> Any:
        with rtnl(self.ns) as ipr:
            return ipr.link("get", index=self._index(ipr))[0]

    # -- state -------------------------------------------------------------

    def exists(self) -> bool:
        """False also when the namespace is gone, which takes its devices with it."""
        if not ns_exists(self.ns):
            return False
        with rtnl(self.ns) as ipr:
            return bool(ipr.link_lookup(ifname=self.name))

    @property
    def mac(self) -> str:
        return self._get().get_attr("IFLA_ADDRESS")

    @property
    def mtu(self) -> int:
        return self._get().get_attr("IFLA_MTU")

    @property
    def is_up(self) -> bool:
        """Administratively up (``ip link set up``), whatever the carrier says."""
        return bool(self._get()["flags"] & _IFF_UP)

    @property
    def stats(self) -> dict[str, int]:
        """The device's 64-bit counters (rx_packets, tx_bytes, ...)."""
        return dict(self._get().get_attr("IFLA_STATS64"))

    @property
    def master(self) -> str | None:
        """The name of the bridge this device is a port of, if any."""
        with rtnl(self.ns) as ipr:
            master = ipr.link("get", index=self._index(ipr))[0].get_attr("IFLA_MASTER")
            return ipr.link("get", index=master)[0].get_attr("IFLA_IFNAME") if master else None

    @property
    def addresses(self) -> list[str]:
        """The device's IPv4 addresses (the ones the lab and tests give) as CIDR
        strings, in the kernel's order."""
        return self._addresses(socket.AF_INET)

    @property
    def ipv6_addresses(self) -> list[str]:
        """The device's IPv6 addresses as CIDR strings: the link-local one the kernel
        gives every device (tentative until its DAD ends), and any other."""
        return self._addresses(socket.AF_INET6)

    def link_local(self, timeout: float = 60.0, poll: float = 0.05) -> str:
        """The device's IPv6 link-local address once it can be used (its duplicate
        address detection over), to reach the device as ``fe80::...%eth0``.
        TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with rtnl(self.ns) as ipr:
                for m in ipr.get_addr(family=socket.AF_INET6, index=self._index(ipr)):
                    addr = m.get_attr("IFA_ADDRESS")
                    flags = m.get_attr("IFA_FLAGS") or m["flags"]
                    if addr.startswith("fe80:") and not flags & _IFA_F_TENTATIVE:
                        return addr
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no usable link-local address on {self} within {timeout}s")
            time.sleep(poll)

    def _addresses(self, family: int) -> list[str]:
        with rtnl(self.ns) as ipr:
            msgs = ipr.get_addr(family=family, index=self._index(ipr))
        return [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in msgs]

    # -- changes -----------------------------------------------------------

    def configure(self, address: str | None = None, *, mtu: int | None = None,
                  mac: str | None = None, master: str | None = None, up: bool = True) -> str:
        """Apply settings in one netlink session: add ``address`` (CIDR), set ``mtu`` and
        ``mac``, make it a port of bridge ``master`` (in the same namespace), then set it
        up (or down).  Returns the MAC the device has afterwards: the kernel picks one
        unless ``mac`` is given, and nodes record it."""
        with rtnl(self.ns) as ipr:
            idx = self._index(ipr)
            attrs: dict[str, Any] = {}
            if mtu is not None:
                attrs["mtu"] = mtu
            if mac is not None:
                attrs["address"] = mac
            if master is not None:
                br = ipr.link_lookup(ifname=master)
                if not br:
                    raise LookupError(f"no bridge {master!r} in {self.ns}")
                attrs["master"] = br[0]
            if attrs:
                ipr.link("set", index=idx, **attrs)
            if address is not None:
                ip, plen = split_cidr(address)
                ipr.addr("add", index=idx, address=ip, prefixlen=plen)
            ipr.link("set", index=idx, state="up" if up else "down")
            return ipr.link("get", index=idx)[0].get_attr("IFLA_ADDRESS")

    def set_mtu(self, mtu: int) -> None:
        with rtnl(self.ns) as ipr:
            ipr.link("set", index=self._index(ipr), mtu=mtu)

    def set_up(self, up: bool = True) -> None:
        """Set the device administratively up, or down with ``up=False``."""
        with rtnl(self.ns) as ipr:
            ipr.link("set", index=self._index(ipr), state="up" if up else "down")

    def announce(self, mac: str | None = None, gaps: Sequence[float] = ANNOUNCE_GAPS) -> None:
        """Send RARP self-announcements from this device, as QEMU does after a migration."""
        run_in_ns(self.ns, _self_announce, self.name, mac or self.mac, gaps)

    def delete(self) -> None:
        """Delete the device; a missing one, or one whose namespace is gone, counts as
        deleted.  A veth's peer goes with it."""
        if not ns_exists(self.ns):
            return
        with rtnl(self.ns) as ipr:
            found = ipr.link_lookup(ifname=self.name)
            if found:
                ipr.link("del", index=found[0])

    # -- making and finding devices --------------------------------------------

    @classmethod
    def add_bridge(cls, ns: str, name: str) -> Interface:
        """A new Linux bridge ``name`` in ``ns``, up and forwarding at once.

        STP off and forward delay 0 so ports forward the moment they come up
        (tests would otherwise wait 30 s); multicast snooping off so vnet's
        multicast discovery floods like on a dumb hub instead of depending on
        IGMP state nobody is generating.
        """
        with rtnl(ns) as ipr:
            ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0,
                     br_mcast_snooping=0)
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        return cls(name, ns)

    @classmethod
    def wait(cls, ns: str, name: str, timeout: float, poll: float = 0.05) -> Interface:
        """The device ``name`` in ``ns`` once it exists: someone else (vnetd, a test)
        is about to create it.  TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with rtnl(ns) as ipr:
            while not ipr.link_lookup(ifname=name):
                if guard.interrupted:
                    # Leave the guarded section so the signal is delivered.
                    raise InterruptedError(f"interrupted waiting for {name!r} in {ns}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{name!r} did not appear in {ns} within {timeout}s")
                time.sleep(poll)
        return cls(name, ns)


@dataclass(eq=False)
class Link:
    """A veth pair: ``intf1`` in one namespace, ``intf2`` in another.

    A veth pair lives and dies as a whole: deleting either end, or the namespace
    of either end, removes both.
    """

    intf1: Interface
    intf2: Interface

    @classmethod
    def create(cls, ns1: str, name1: str, ns2: str, base2: str, *,
               mtu: int | None = None, mac: str | None = None) -> Link:
        """A veth ``name1`` in ``ns1`` whose peer, named after ``base2`` (a free name
        is picked), is in ``ns2``.  ``mtu`` applies to both ends, ``mac`` to ``name1``.

        Both ends are created directly in their namespaces (never in the root
        namespace, even briefly), so parallel runs can't clash on names.
        """
        with rtnl(ns2) as outer:
            name2 = _free_ifname(outer, base2)
        peer: dict[str, object] = {"ifname": name2, "net_ns_fd": ns2}
        spec: dict[str, object] = {"ifname": name1, "kind": "veth", "peer": peer}
        if mtu is not None:
            peer["mtu"] = mtu
            spec["mtu"] = mtu
        if mac is not None:
            spec["address"] = mac
        with rtnl(ns1) as inner:
            inner.link("add", **spec)
        return cls(Interface(name1, ns1), Interface(name2, ns2))

    @property
    def intfs(self) -> tuple[Interface, Interface]:
        return (self.intf1, self.intf2)

    def joins(self, ns: str) -> bool:
        """True if either end is in namespace ``ns``."""
        return ns in (self.intf1.ns, self.intf2.ns)

    def set_up(self, up: bool = True) -> None:
        """Set both ends up, or down with ``up=False``: a pulled cable, as neither
        side can send and both see the carrier go."""
        for intf in self.intfs:
            intf.set_up(up)

    @property
    def is_up(self) -> bool:
        return all(intf.is_up for intf in self.intfs)

    def exists(self) -> bool:
        """Both ends are there (the names could be reused by a new link, see move_vm)."""
        return self.intf1.exists() and self.intf2.exists()

    def remove(self) -> None:
        """Delete the pair; a link already gone counts as removed."""
        self.intf1.delete()
        self.intf2.delete()
