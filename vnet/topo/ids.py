"""Names derived from a topology: vnet ids, vnet devices, port names, socket ports.

Every host derives them from the file alone, so they agree with no coordination:

* a segment's vnet id is the first 128 bits of SHA-256 over the lab's name and the
  segment's sorted endpoints, with the top bit set: ids start at 8000:..., far from
  the short ids (1..ffff) and the small long ids users type by hand, and the same
  link in two labs of other names gets two ids.  A segment's `id:` overrides it.
* a segment's vnet device is `vt` and the id's last 48 bits in hex (14 characters);
* the host end of a namespace node's veth (the port) is `vp` and 40 bits of SHA-256
  over lab, node and interface (12 characters): Linux allows 15.
* a socket node's NICs, in the order of their interface names, get UDP ports from its
  `base-port`: NIC i is ours at base + 2i, the VM's at base + 2i + 1, on 127.0.0.1.
"""
from __future__ import annotations

import hashlib

from vnet.model.endpoint import EndpointSpec
from vnet.model.vnetid import VnetId

from .model import Endpoint, Node, Segment, Topology

#: The bit every derived id has set (doc/topology.md, "Vnet ids").
TOP_BIT = 1 << 127
LOOPBACK = "127.0.0.1"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(("vnet-topology", *parts)).encode()).digest()


def derived_id(lab: str, endpoints: tuple[Endpoint, ...]) -> VnetId:
    """The id of the segment joining `endpoints` in lab `lab`, whatever their order."""
    value = int.from_bytes(_digest(lab, *sorted(str(e) for e in endpoints))[:16], "big")
    return VnetId(value | TOP_BIT)


def segment_id(topo: Topology, seg: Segment) -> VnetId:
    """The segment's vnet id: its `id:` if given, else derived."""
    return VnetId.parse(seg.id) if seg.id else derived_id(topo.name, seg.endpoints)


def vnetif_name(vid: VnetId) -> str:
    """The vnet device of a topology's vnet (the default vnif<last field> would collide
    between derived ids sharing their last 16 bits)."""
    return f"vt{vid.value & 0xFFFF_FFFF_FFFF:012x}"


def port_name(lab: str, ep: Endpoint) -> str:
    """The host end of the veth of a namespace or container node's interface."""
    return "vp" + _digest(lab, ep.node, ep.iface)[:5].hex()


def socket_nics(topo: Topology, node: Node) -> list[str]:
    """The node's interfaces in the topology, in the order their ports are given."""
    return sorted({ep.iface for seg in topo.segments for ep in seg.endpoints if ep.node == node.name})


def socket_ports(topo: Topology, ep: Endpoint) -> tuple[int, int]:
    """(our UDP port, the VM's UDP port) of a socket node's NIC."""
    node = topo.nodes[ep.node]
    assert node.base_port is not None, "load checks that socket nodes have a base-port"
    i = socket_nics(topo, node).index(ep.iface)
    return node.base_port + 2 * i, node.base_port + 2 * i + 1


def endpoint_spec(topo: Topology, ep: Endpoint) -> EndpointSpec:
    """The vnet endpoint of a socket node's NIC: `udp 127.0.0.1:OURS 127.0.0.1:VM'S`."""
    ours, vms = socket_ports(topo, ep)
    return EndpointSpec("udp", (LOOPBACK, ours), (LOOPBACK, vms))
