"""What a topology file holds once loaded and checked (vnet.topo.load builds it).

Plain frozen dataclasses: everything that decides what a host builds (ids, names,
configs) is derived from them by pure functions, so every host derives the same."""
from __future__ import annotations

from dataclasses import dataclass, field

#: Node kinds: a network namespace (named, as `ip netns` keeps them), a container
#: (its namespace found from its runtime), a libvirt domain and a QEMU VM (socket NICs),
#: a plain interface of the host (the endpoint's interface is the host's interface).
NODE_KINDS = ("namespace", "container", "libvirt", "qemu", "interface")
#: Kinds whose interfaces are veth pairs into a namespace.
NETNS_KINDS = ("namespace", "container")
#: Kinds whose NICs are QEMU sockets (vnet endpoints).
SOCKET_KINDS = ("libvirt", "qemu")
#: Link control keys, as vn port-set names them (doc/ports.md).
CONTROL_KEYS = ("loss", "delay", "jitter", "corrupt", "rate", "suspended")


@dataclass(frozen=True)
class Host:
    """A machine of the lab, known by name; `address` is its underlay IPv4 address."""

    name: str
    address: str
    line: int = 0


@dataclass(frozen=True)
class Node:
    """A lab node on one host.  `netns` names the namespace of a namespace node (default
    its name); `container` the container of a container node (default its name) and
    `runtime` the tool asked for its pid; `domain` a libvirt domain (default its name);
    `base_port` the first UDP port of a socket node's NICs (doc/topology.md)."""

    name: str
    host: str
    kind: str = "namespace"
    netns: str | None = None
    container: str | None = None
    runtime: str = "docker"
    domain: str | None = None
    base_port: int | None = None
    line: int = 0


@dataclass(frozen=True, order=True)
class Endpoint:
    """One end of a link or LAN: interface `iface` of node `node` (`node:iface`)."""

    node: str
    iface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.iface}"


@dataclass(frozen=True)
class Control:
    """Link control of one direction (frames towards one end), None where unset.
    Kept as given; the datapath's `vn port-set` checks the values (doc/ports.md)."""

    loss: float | None = None
    delay: float | None = None
    jitter: float | None = None
    corrupt: float | None = None
    rate: str | None = None
    suspended: bool = False

    def to_link(self):  # -> vnet.model.linkctl.LinkControl
        """The port's LinkControl (doc/ports.md); LinkError names a bad value."""
        from vnet.model.linkctl import NO_LINK
        words = {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in self.items().items()
                 if k != "suspended"}
        return NO_LINK.changed(**words, suspended="yes" if self.suspended else "no")

    def items(self) -> dict[str, object]:
        """The options that are set, by name."""
        out: dict[str, object] = {k: getattr(self, k) for k in CONTROL_KEYS[:-1]
                                  if getattr(self, k) is not None}
        if self.suspended:
            out["suspended"] = True
        return out


@dataclass(frozen=True)
class Segment:
    """A link (two endpoints) or a LAN (more): one vnet.  `name` is the LAN's name, or
    for a link `a -- b`; `control` maps an endpoint to the link control of the frames
    sent towards it."""

    name: str
    endpoints: tuple[Endpoint, ...]
    lan: bool = False
    mtu: int | None = None
    id: str | None = None
    control: dict[Endpoint, Control] = field(default_factory=dict, compare=False, hash=False)
    line: int = 0
    #: Where the file says it (`links[2]`, `lans.mgmt`) and the line of each endpoint.
    key: str = ""
    lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class Defaults:
    """What every vnet of the topology gets unless a link says otherwise."""

    mtu: int | None = None
    encapsulation: str = "udp"
    security: str = "none"
    key_file: str | None = None


@dataclass(frozen=True)
class Topology:
    """A loaded, checked topology file."""

    name: str
    source: str
    hosts: dict[str, Host]
    nodes: dict[str, Node]
    segments: tuple[Segment, ...]
    defaults: Defaults = Defaults()

    def host_of(self, ep: Endpoint) -> str:
        return self.nodes[ep.node].host

    def local_ends(self, seg: Segment, host: str) -> list[Endpoint]:
        """The ends of `seg` on `host`."""
        return [ep for ep in seg.endpoints if self.host_of(ep) == host]

    def segments_of(self, host: str) -> list[Segment]:
        """The links and LANs with at least one end on `host`: what it builds."""
        return [s for s in self.segments if self.local_ends(s, host)]
