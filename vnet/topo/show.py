"""`vn topo show`: every link and LAN with its vnet, its ends, their hosts and states.

A local end's state comes from the datapath's listings (`vn ports`, `vn endpoints`): a
port attached is `up`, one waiting is `waiting` (for its interface: the node is down).
A remote end is `up` when this host has learned a MAC of the vnet at that host's
underlay address (VARP, doc/config.md), else `unreachable`: nothing has been heard from
that host on the vnet (the host is down or cut off, or its end is not up).  Only a
host that is itself in the segment can tell; for others the state is `-`."""
from __future__ import annotations

from typing import Any

from . import ids
from .apply import port_of
from .model import SOCKET_KINDS, Topology

Json = dict[str, Any]


def status(topo: Topology, host: str | None, ports: list[Json], endpoints: list[Json],
           varp: list[Json]) -> list[Json]:
    """One JSON object per segment (doc/topology.md gives the shape); `host` is this
    host (None: not one of the topology's), the listings are this host's `--json` ones
    (empty when its datapath does not run)."""
    port_state = {(p["vnet"], p["ifname"]): p["state"] for p in ports}
    ep_state = {(e["vnet"], " ".join(w for w in (e["kind"], e.get("local"), e.get("remote")) if w)): e["state"]
                for e in endpoints}
    heard = {(e["vnet"], e["addr"]) for e in varp}
    out = []
    for seg in topo.segments:
        vid = str(ids.segment_id(topo, seg))
        here = host is not None and bool(topo.local_ends(seg, host))
        ends = []
        for ep in seg.endpoints:
            node = topo.nodes[ep.node]
            attach = port_of(topo, ep)
            if node.kind in SOCKET_KINDS:
                attach = str(ids.endpoint_spec(topo, ep))
            if node.host == host:
                if node.kind in SOCKET_KINDS:
                    raw = ep_state.get((vid, attach))
                    state = None if raw is None else "up" if raw == "connected" else raw
                else:
                    raw = port_state.get((vid, attach))
                    state = None if raw is None else "up" if raw == "attached" else "waiting"
                state = state or "not applied"
            elif here:
                state = "up" if (vid, topo.hosts[node.host].address) in heard else "unreachable"
            else:
                state = "-"
            ends.append({"endpoint": str(ep), "node": ep.node, "kind": node.kind, "host": node.host,
                         "attachment": attach, "state": state})
        out.append({"name": seg.name, "lan": seg.lan, "vnet": vid, "vnetif": ids.vnetif_name(ids.segment_id(topo, seg)),
                    "mtu": seg.mtu or topo.defaults.mtu, "ends": ends,
                    "control": {str(ep): c.items() for ep, c in seg.control.items() if c.items()}})
    return out


def brief(view: list[Json]) -> list[str]:
    """One line per segment: its short name, vnet, then each end as NODE:IF@HOST STATE."""
    lines = []
    for s in view:
        ends = "  ".join(f'{e["endpoint"]}@{e["host"]} {e["state"]}' for e in s["ends"])
        lines.append(f'{s["vnet"]}  {ends}')
    return lines
