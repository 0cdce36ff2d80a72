"""What a libvirt domain or QEMU VM needs to join its links: the `<interface>` XML or the
`-netdev`/`-device` arguments of its NICs, with the ports the vnet endpoints use
(vnet.topo.ids: NIC i of a node is ours at base-port + 2i, the VM's at + 1)."""
from __future__ import annotations

import hashlib

from vnet.errors import VnetError

from . import ids
from .model import SOCKET_KINDS, Endpoint, Topology


def _mac(topo: Topology, ep: Endpoint) -> str:
    """A stable locally administered MAC per NIC, so a VM keeps its MACs across boots."""
    h = hashlib.sha256(f"vnet-topology\0{topo.name}\0{ep}".encode()).digest()
    return "52:54:" + ":".join(f"{b:02x}" for b in h[:4])


def nics(topo: Topology, node_name: str) -> list[tuple[str, int, int, str]]:
    """(interface, our port, the VM's port, MAC) of each NIC of a socket node."""
    node = topo.nodes.get(node_name)
    if node is None:
        raise VnetError(f"{topo.source}: no node {node_name!r}")
    if node.kind not in SOCKET_KINDS:
        raise VnetError(f"{topo.source}: node {node_name} is a {node.kind} node; only libvirt and qemu "
                        "nodes have socket NICs")
    out = []
    for iface in ids.socket_nics(topo, node):
        ep = Endpoint(node.name, iface)
        ours, vms = ids.socket_ports(topo, ep)
        out.append((iface, ours, vms, _mac(topo, ep)))
    return out


def libvirt_xml(topo: Topology, node_name: str) -> str:
    """An `<interface type='udp'>` per NIC, for the domain's `<devices>`."""
    lines = []
    for iface, ours, vms, mac in nics(topo, node_name):
        lines += [f"<!-- {node_name}:{iface} -->",
                  "<interface type='udp'>",
                  f"  <mac address='{mac}'/>",
                  f"  <source address='{ids.LOOPBACK}' port='{ours}'>",
                  f"    <local address='{ids.LOOPBACK}' port='{vms}'/>",
                  "  </source>",
                  "  <model type='virtio'/>",
                  "</interface>"]
    return "\n".join(lines) + "\n"


def qemu_args(topo: Topology, node_name: str) -> list[str]:
    """`-netdev dgram` and `-device virtio-net-pci` arguments per NIC (QEMU 7.2+)."""
    args: list[str] = []
    for iface, ours, vms, mac in nics(topo, node_name):
        nid = f"{iface}".replace(".", "_")
        args += ["-netdev", f"dgram,id={nid},local.type=inet,local.host={ids.LOOPBACK},local.port={vms},"
                            f"remote.type=inet,remote.host={ids.LOOPBACK},remote.port={ours}",
                 "-device", f"virtio-net-pci,netdev={nid},mac={mac}"]
    return args
