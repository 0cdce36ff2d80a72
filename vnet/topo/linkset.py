"""`vn topo link set`: link control of a running lab's link, by its ends' names.

A direction of a link is the port of the end it goes to (doc/ports.md), so a host can
only set the directions towards its own ends; the others are named in the output,
for the user to run the same command on their hosts.  Suspending any one end stops
the link both ways."""
from __future__ import annotations

from vnet.control.controller import Controller
from vnet.errors import VnetError

from . import ids
from .apply import port_of
from .load import Reader, endpoint
from .model import Endpoint, Segment, Topology


def find_segment(topo: Topology, which: str) -> Segment:
    """The link with end `which` (NODE:IF), or the LAN named `which`."""
    for seg in topo.segments:
        if seg.lan and seg.name == which:
            return seg
    if ":" not in which:
        raise VnetError(f"{topo.source}: no LAN {which!r}; name a link by one of its ends, NODE:IF")
    ep = endpoint(Reader(topo.source), which, 0, "LINK", topo.nodes)
    for seg in topo.segments:
        if ep in seg.endpoints:
            return seg
    raise VnetError(f"{topo.source}: no link or LAN has the end {which}")


def set_link(ctrl: Controller, topo: Topology, host: str, which: str, towards: str | None,
             clear: bool, suspend: bool | None, **options: str | None) -> list[str]:
    """Set the link control of the segment's ends on `host` (all, or `towards`); one
    line per end saying what was done, or where to do it."""
    seg = find_segment(topo, which)
    ends: list[Endpoint] = list(seg.endpoints)
    if towards is not None:
        ep = endpoint(Reader(topo.source), towards, 0, "--towards", topo.nodes)
        if ep not in seg.endpoints:
            raise VnetError(f"{towards} is not an end of {seg.name}")
        ends = [ep]
    vid = str(ids.segment_id(topo, seg))
    out = []
    local = 0
    for ep in ends:
        where = topo.host_of(ep)
        port = port_of(topo, ep)
        if where != host:
            out.append(f"{ep}: on host {where}: run this command there for the direction towards it")
            continue
        if port is None:
            out.append(f"{ep}: a socket NIC: link control acts on ports only (doc/ports.md)")
            continue
        link = ctrl.set_port_link(vid, port, clear=clear, suspend=suspend, **options)
        out.append(f"{ep} (port {port}): {link}")
        local += 1
    if not local:
        raise VnetError(f"{seg.name}: none of the ends to change is on this host ({host}):\n" + "\n".join(out))
    return out
