"""Prometheus text exposition (format 0.0.4) of what a datapath reports.

One page for both datapaths and both ways of reaching Prometheus (`vn stats
--prometheus` for node_exporter's textfile collector, `vnetd --metrics` for a scrape):
it is built from the Datapath listings only, so whatever `vn stats`, `vn vnets`,
`vn varp`, ... show, the page shows with the same values (doc/metrics.md).

Every counter and drop reason of the registry (vnet.wire.stats) is written, zeros
included: the listings leave zeros out, but a series that appears only once it is
non-zero breaks `rate()` across its first increment.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import sxp
from vnet.control.datapath import Datapath, Record
from vnet.errors import DatapathError
from vnet.model.vnetid import VnetId
from vnet.wire import stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "vnet_"

#: The traffic counters of `vn vnets` (doc/commands.md, "vnets"): (field, help).
_TRAFFIC = (("rx_packets", "frames received from the network for the vnet and delivered into it"),
            ("tx_packets", "frames of the vnet to send to the network (sent, or dropped on a send error)"),
            ("rx_bytes", "bytes of the frames counted in rx_packets"),
            ("tx_bytes", "bytes of the frames counted in tx_packets"))

#: What vnetd's fast path carried of them (doc/fastpath.md): vnetd with a fast path only.
_FAST_TRAFFIC = tuple((f"fast_{field}", f"the part of {field} that vnetd's fast path carried")
                      for field, _ in _TRAFFIC)

Sample = tuple[dict[str, str], int]


def escape_label(value: str) -> str:
    """A label value as the text format quotes it: backslash, double quote and newline
    escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metric_name(name: str) -> str:
    """`unknown-unicast-floods` -> `vnet_unknown_unicast_floods`: registry names use
    dashes, which Prometheus names cannot hold."""
    return PREFIX + name.replace("-", "_")


def vnet_label(vid: str) -> str:
    """A vnet id as users type it (`97`), or the 39-character form if it has no short one."""
    return VnetId.parse(vid).short or vid


class Page:
    """The families of one exposition, written in the order they were added."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, samples: Iterable[Sample]) -> None:
        """One metric family: HELP and TYPE lines, then a line per sample.  A family
        with no samples is still announced, so scrapers see which metrics exist."""
        help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if labels:
                text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{text}}} {value}")
            else:
                self.lines.append(f"{name} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _fields(rec: Record) -> dict[str, str]:
    return {item[0]: item[1] for item in sxp.children(rec) if len(item) >= 2 and isinstance(item[1], str)}


def _counts(recs: list[Record], head: str) -> dict[str, int]:
    """The `vn stats` record `head` (counters or drops) as {name: value}."""
    for rec in recs:
        if rec and rec[0] == head:
            return {name: int(value) for name, value in rec[1:]}
    return {}


def _heads(recs: list[Record], head: str) -> list[dict[str, str]]:
    return [_fields(r) for r in recs if r and r[0] == head]


def _per_vnet(vnets: list[str], rows: list[dict[str, str]]) -> list[Sample]:
    """How many rows each vnet has (every vnet, zeros included)."""
    n = Counter(vnet_label(r["vnet"]) for r in rows)
    return [({"vnet": v}, n[v]) for v in vnets]


def render(dp: Datapath) -> str:
    """The metrics page of `dp`: the `vn stats` counters and drops, each vnet's traffic
    and table sizes, and each port's, endpoint's and peer's traffic."""
    page = Page()
    recs = dp.stats()
    counters, drops = _counts(recs, "counters"), _counts(recs, "drops")
    for name in stats.COUNTERS:
        page.family(metric_name(name) + "_total", "counter", f"vn stats counter {name}",
                    [({}, counters.get(name, 0))])
    page.family(PREFIX + "drops_total", "counter", "packets dropped, by reason (vn stats drops)",
                [({"reason": r}, drops.get(r, 0)) for r in stats.DROPS])

    vnets = _heads(dp.vnets(), "vnet")
    ids = [vnet_label(v["id"]) for v in vnets]
    page.family(PREFIX + "vnets", "gauge", "vnets on this host", [({}, len(vnets))])
    for field, help_ in _TRAFFIC:
        page.family(f"{PREFIX}{field}_total", "counter", f"per vnet: {help_}",
                    [({"vnet": i}, int(v.get(field, 0))) for i, v in zip(ids, vnets)])
    for field, help_ in _FAST_TRAFFIC:
        page.family(f"{PREFIX}{field}_total", "counter", f"per vnet: {help_}",
                    [({"vnet": i}, int(v[field])) for i, v in zip(ids, vnets) if field in v])

    vifs = _heads(dp.vifs(), "vif")
    varp = _heads(dp.varp(), "ventry")
    ports = _heads(dp.ports(), "port")
    try:
        endpoints = _heads(dp.endpoints(), "endpoint")
    except DatapathError as e:
        if e.code != "EOPNOTSUPP":
            raise
        endpoints = []  # the kernel module has no socket endpoints
    peers = _heads(dp.peers(), "vnet_peer")
    page.family(PREFIX + "vifs", "gauge", "local MACs in the vif table (vn vifs), per vnet",
                _per_vnet(ids, vifs))
    page.family(PREFIX + "varp_entries", "gauge", "remote MACs in the VARP cache (vn varp), per vnet",
                _per_vnet(ids, varp))
    page.family(PREFIX + "ports", "gauge", "ports of the vnet (vn ports), per vnet", _per_vnet(ids, ports))
    page.family(PREFIX + "endpoints", "gauge", "socket endpoints of the vnet (vn endpoints), per vnet",
                _per_vnet(ids, endpoints))
    page.family(PREFIX + "peers", "gauge", "forwarding peers (vn peers)", [({}, len(peers))])

    for field, _help in _TRAFFIC:
        page.family(f"{PREFIX}port_{field}_total", "counter",
                    f"per port: {field} (vn ports; rx: from the port into the vnet)",
                    [({"vnet": vnet_label(p["vnet"]), "port": p["ifname"]}, int(p[field])) for p in ports])
    for field in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "drops"):
        page.family(f"{PREFIX}endpoint_{field}_total", "counter", f"per endpoint: {field} (vn endpoints)",
                    [({"vnet": vnet_label(e["vnet"]), "kind": e["kind"], "local": e["local"]}, int(e[field]))
                     for e in endpoints])
    for field in ("tx_packets", "rx_packets"):
        page.family(f"{PREFIX}peer_{field}_total", "counter", f"per peer: {field} (vn peers)",
                    [({"peer": p["addr"]}, int(p[field])) for p in peers])
    return page.text()
