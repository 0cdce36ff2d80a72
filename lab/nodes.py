"""The nodes of a lab: switches, hosts (and routers), VMs; each one network namespace.

Nodes describe what ``Lab`` built; they are plain records plus the interfaces in their
namespace, so a test can reach a node's devices (``host.eth0.set_mtu(1400)``) without
going through the lab.  Building, moving and removing them is the lab's job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lab.links import Interface, Link

__all__ = ["VM", "Host", "Node", "NodeRef", "Switch"]


@dataclass
class Node:
    """A namespace of the lab: ``name`` in the topology, ``ns`` on this machine.

    ``intfs`` holds the interfaces in it that the lab made, by name: a node's own
    NICs, and the far ends of cables plugged into it (a switch's ports, a host's
    ports for its VMs).
    """

    name: str
    ns: str
    intfs: dict[str, Interface] = field(default_factory=dict, kw_only=True, repr=False,
                                        compare=False)

    def intf(self, name: str) -> Interface:
        try:
            return self.intfs[name]
        except KeyError:
            raise LookupError(f"node {self.name!r} has no interface {name!r} "
                              f"(it has {', '.join(sorted(self.intfs)) or 'none'})") from None

    @property
    def eth0(self) -> Interface:
        """The first NIC: every host, router and VM has one; a switch has none."""
        return self.intf("eth0")


#: How the lab's methods accept a node: the object, or its name in the lab (or the
#: name of any namespace).
NodeRef = Node | str


@dataclass
class Switch(Node):
    """A LAN segment: the bridge ``bridge`` inside namespace ``ns``."""

    bridge: str = "sw0"


@dataclass
class Host(Node):
    """A simulated machine (or router); ``ip`` is its first/primary address.

    ``addresses`` holds every CIDR address in leg order so routers, which have
    one per switch (on eth0, eth1, ...), can be described by the same type as
    plain hosts.  ``mac`` is a host's eth0 MAC as built (empty for a router).
    """

    ip: str
    address: str
    ifname: str = "eth0"
    gateway: str | None = None
    addresses: list[str] = field(default_factory=list)
    mac: str = ""


@dataclass
class VM(Node):
    """A guest namespace whose ``eth0`` is cabled (``link``) to a port on ``host``.

    ``host``, ``link`` (and so ``port``) and ``bridge`` change when the VM is
    migrated with ``Lab.move_vm``; ``ns``, ``ip`` and ``mac`` never do, which is
    exactly the property migration tests want to check.
    """

    ip: str
    address: str
    mac: str
    host: Host
    link: Link
    bridge: str
    ifname: str = "eth0"

    @property
    def port(self) -> str:
        """The name of the cable's far end, the port on ``host``'s bridge."""
        return self.link.intf2.name
