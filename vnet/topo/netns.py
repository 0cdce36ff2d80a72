"""Veth pairs into node namespaces: the node's end named as the file says, the host's
end the port (`vn topo apply` makes them; a container runtime may make them anew).

Done with iproute2's `ip`, which creates the peer directly in the node's namespace
under its final name (`ip link add P type veth peer name eth1 netns NS`): no
temporary name, nothing left in the host namespace if the node's namespace is gone."""
from __future__ import annotations

import os
import subprocess

from pyroute2 import IPRoute

from vnet.errors import VnetError
from vnet.host import netdev

from .model import Node


class NodeError(VnetError):
    """A node's namespace cannot be reached or changed."""


def netns_target(node: Node) -> str | None:
    """What `ip ... netns` takes for the node's namespace (a name under /run/netns, or
    a container's pid), or None when the node is not running now."""
    if node.kind == "namespace":
        name = node.netns or node.name
        return name if os.path.exists(f"/run/netns/{name}") else None
    if node.kind == "container":
        try:
            out = subprocess.run([node.runtime, "inspect", "-f", "{{.State.Pid}}", node.container or node.name],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        pid = out.stdout.strip()
        return pid if out.returncode == 0 and pid.isdigit() and pid != "0" else None
    raise ValueError(f"node {node.name}: kind {node.kind} has no namespace")


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise NodeError(f"ip {' '.join(args)}: {r.stderr.strip() or f'exit status {r.returncode}'}")


def exists(port: str) -> bool:
    """Whether an interface named `port` exists in this namespace."""
    with IPRoute() as ipr:
        return netdev.link_index(ipr, port) is not None


def _in_node(node: Node, target: str, *args: str) -> None:
    """`ip ARGS` in the node's namespace (a name: `ip -n`; a pid: nsenter)."""
    argv = (["nsenter", "-t", target, "-n", "ip", *args] if target.isdigit()
            else ["ip", "-n", target, *args])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise NodeError(f"node {node.name}: ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")


def create(port: str, node: Node, iface: str, target: str, mtu: int) -> None:
    """A veth pair: `port` here, `iface` in the node's namespace (up, with `mtu`)."""
    _ip("link", "add", port, "mtu", str(mtu), "type", "veth", "peer", "name", iface,
        "mtu", str(mtu), "netns", target)
    try:
        _in_node(node, target, "link", "set", iface, "up")
    except BaseException:
        delete(port)
        raise


def set_mtu(node: Node, iface: str, target: str, mtu: int) -> None:
    """The MTU of the node's end of a veth (its vnet's MTU changed)."""
    _in_node(node, target, "link", "set", iface, "mtu", str(mtu))


def delete(port: str) -> bool:
    """Delete the veth whose host end is `port` (its peer goes with it); False if gone."""
    with IPRoute() as ipr:
        return netdev.delete_link(ipr, port)
