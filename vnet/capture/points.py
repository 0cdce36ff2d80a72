"""Where `vn capture` looks: the capture points of one vnet on this host.

A point is a place frames cross into or out of the vnet, and becomes one pcapng
interface named HOST/VNET/POINT:
  tunnel            the vnet device (vnifNN: the module's device, vnetd's tap):
                    outbound = toward other hosts, inbound = from them
  port:IFNAME       a port (vn port-add): inbound = from the interface into the vnet
  bridge:IFNAME     a member of the vnet's bridge (a VM's tap or veth), likewise
  endpoint:KIND:ADDR  a socket endpoint (vn endpoint-add), seen through the datapath
  underlay:IFNAME   (--underlay) the encapsulated packets of the vnet
Points are found from the datapath's own listings, so both datapaths give the same.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyroute2 import IPRoute

import sxp
from vnet.control.datapath import Datapath
from vnet.errors import DatapathError, VnetError
from vnet.host import netdev
from vnet.model.config import VnetConfig


class PointError(VnetError):
    """A capture point that this vnet does not have here."""


@dataclass(frozen=True)
class Point:
    """One capture point: an interface to open a packet socket on (`ifname`), or a
    socket endpoint that the datapath shows (`endpoint`, its spec as `vn endpoints` lists it)."""

    name: str
    what: str
    ifname: str | None = None
    endpoint: tuple[str, ...] | None = None


def _endpoint_words(rec) -> tuple[str, ...]:
    kind = str(sxp.child_value(rec, "kind"))
    addrs = [str(sxp.child_value(rec, k)) for k in ("local", "remote")]
    return (kind, *[a for a in addrs if a != "-"])


def endpoint_point(words: tuple[str, ...]) -> Point:
    return Point(f"endpoint:{words[0]}:{words[1]}", f"socket endpoint {' '.join(words)}", endpoint=words)


def vnet_points(dp: Datapath, cfg: VnetConfig) -> list[Point]:
    """Every capture point of the vnet `cfg` here, in a fixed order: tunnel, bridge
    members, ports, endpoints."""
    vid = str(cfg.id)
    rec = next((r for r in dp.vnets() if sxp.child_value(r, "id") == vid), None)
    if rec is None:
        raise PointError(f"vnet {cfg.id} does not run on this host (no device {cfg.vnetif})")
    vnetif = str(sxp.child_value(rec, "vnetif", cfg.vnetif))
    points = [Point("tunnel", f"vnet device {vnetif}", ifname=vnetif)]
    with IPRoute() as ipr:
        bridge = netdev.bridge_of(ipr, vnetif)
        if bridge:
            points += [Point(f"bridge:{m}", f"member {m} of bridge {bridge}", ifname=m)
                       for m in netdev.bridge_ports(ipr, bridge) if m != vnetif]
    for p in dp.ports():
        if sxp.child_value(p, "vnet") == vid and sxp.child_value(p, "state") == "attached":
            name = str(sxp.child_value(p, "ifname"))
            points.append(Point(f"port:{name}", f"port {name}", ifname=name))
    points += [endpoint_point(_endpoint_words(e)) for e in _endpoints(dp) if sxp.child_value(e, "vnet") == vid]
    return points


def _endpoints(dp: Datapath) -> list:
    """The datapath's socket endpoints; none where it has none at all (a module
    without them says EOPNOTSUPP)."""
    try:
        return dp.endpoints()
    except DatapathError as e:
        if e.code == "EOPNOTSUPP":
            return []
        raise


def select_points(points: list[Point], wanted: tuple[str, ...]) -> list[Point]:
    """The points `-i` names (a point's name, or the bare interface name of one), in
    the order given; all of them if none is named."""
    if not wanted:
        return points
    out: list[Point] = []
    for w in wanted:
        found = [p for p in points if w in (p.name, p.ifname)]
        if not found:
            have = ", ".join(p.name for p in points)
            raise PointError(f"capture point {w!r} is not one of this vnet's here: {have}")
        out += [p for p in found if p not in out]
    return out
