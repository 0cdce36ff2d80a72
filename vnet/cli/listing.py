"""Listings for scripts and for people: the JSON objects and the brief lines of `vn`.

Both datapaths build the same SXP records (vnet.control.records), and `vn` prints them
as they are by default, as the original did.  Here they become:

* JSON with one shape per listing, whatever the data (doc/schema/*.json, and the JSON
  contract in doc/commands.md): the records' field names in snake_case, integers as
  integers, list fields always lists, and a record that belongs to another nested in
  it (a vnet's device, vifs and VARP entries).  Each field's type is declared here
  rather than guessed from its value, so a vnetif named `1234` stays a string and a
  vnet holding one key still lists it.  Counter and drop names (`announces-received`)
  are data: keys of the `counters` and `drops` objects, never fields.
* brief lines, as `ip -br` prints them: one line per record, aligned columns, short
  vnet ids, counters only with `-s`; an empty listing prints nothing.  They are made
  from the JSON objects, so the two cannot disagree.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import sxp
from vnet.control.datapath import Record
from vnet.errors import VnetError
from vnet.model.config import default_mtu
from vnet.model.linkctl import LinkControl, format_rate
from vnet.model.vnetid import VnetId

Json = dict[str, Any]
#: A brief column's cell: text (left-aligned), a number (right-aligned), or a labelled
#: number such as ("age", 12), whose labels and numbers line up down the column.
Cell = str | int | tuple[str, int]

FORMAT_ENV = "VNET_FORMAT"
#: What listings print unless --json is given: `vn --sxp`/`-br`, else $VNET_FORMAT.
FORMATS = ("sxp", "brief")

#: The packet and byte counters of a vnet and of a network device, in record order.
COUNTERS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")
#: What vnetd's fast path carried of them (doc/fastpath.md); only vnetd has them.
FAST_COUNTERS = ("fast_rx_packets", "fast_tx_packets", "fast_rx_bytes", "fast_tx_bytes")
#: Which path a vnet takes in vnetd, and those counters: JSON always, SXP with -l.
PATH_FIELDS = ("path", "path_reason", *FAST_COUNTERS)
LINK_COUNTERS = (*COUNTERS, "rx_dropped", "tx_dropped")
#: Fields of a VARP entry that only keep the original's layout (always 1, reachable,
#: -, 0); JSON, which the original did not have, leaves them out.
_LAYOUT_ONLY = ("ref", "state", "flags", "queue")


def resolve_format(option: str | None) -> str:
    """`vn --sxp`/`-br`, else $VNET_FORMAT, else sxp: the original's output stays the
    default, and a user who prefers brief lines sets the variable once."""
    fmt = option or os.environ.get(FORMAT_ENV) or "sxp"
    if fmt not in FORMATS:
        raise VnetError(f"{FORMAT_ENV}={fmt}: expected one of {', '.join(FORMATS)}")
    return fmt


# ---- JSON ---------------------------------------------------------------------------

def _object(rec: Record, ints: Iterable[str] = (), lists: Iterable[str] = (),
            skip: Iterable[str] = ()) -> Json:
    """A record's fields as a JSON object: `-` in names becomes `_`, the fields named in
    `ints` are integers, those in `lists` are lists (empty when the record lacks the
    field), and every other field is its one value."""
    ints, lists, skip = set(ints), tuple(lists), set(skip)
    out: Json = {}
    for item in rec[1:]:
        if not (isinstance(item, list) and item and isinstance(item[0], str)) or item[0] in skip:
            continue
        name, values = item[0], item[1:]
        if name in ints:
            values = [int(v) for v in values]
        out[_name(name)] = list(values) if name in lists else (values[0] if values else "")
    for name in lists:
        out.setdefault(_name(name), [])
    return out


def _name(field: str) -> str:
    # The one field whose SXP name is singular although it holds a list.
    return "key_files" if field == "key-file" else field.replace("-", "_")


def vnet(rec: Record) -> Json:
    """A running vnet; `keys` is empty for a vnet with (security none)."""
    return _object(rec, ints=("header", "keys", *COUNTERS, *FAST_COUNTERS), lists=("keys",))


def device(rec: Record) -> Json:
    """A vnet's device (the `vnif` record of `vn vnets -l`): `interfaces` are the other
    ports of its bridge."""
    return _object(rec, ints=("mtu", *LINK_COUNTERS), lists=("interfaces",))


def vif(rec: Record) -> Json:
    return _object(rec, ints=("age",))


def ventry(rec: Record) -> Json:
    return _object(rec, ints=("age",), skip=_LAYOUT_ONLY)


def vnets(recs: list[Record], devices: dict[str, Record | None] | None = None,
          vifs: list[Record] | None = None, varp: list[Record] | None = None) -> list[Json]:
    """`vn vnets`: each vnet, with (-l) its `device` (null if it has none) by vnet id,
    and (-a) its own `vifs` and `varp` entries from the whole tables given."""
    out = []
    for rec in recs:
        view = vnet(rec)
        if devices is not None:
            dev = devices.get(view["id"])
            view["device"] = device(dev) if dev is not None else None
        if vifs is not None:
            view["vifs"] = [vif(r) for r in vifs if r[0] == "vif" and sxp.child_value(r, "vnet") == view["id"]]
        if varp is not None:
            view["varp"] = [ventry(r) for r in varp
                            if r[0] == "ventry" and sxp.child_value(r, "vnet") == view["id"]]
        out.append(view)
    return out


def vif_table(recs: list[Record]) -> Json:
    """`vn vifs`: the table's settings and its `entries`."""
    head = _object(recs[0], ints=("table_ttl", "entry_ttl", "sweeps"))
    return {**head, "entries": [vif(r) for r in recs[1:]]}


def varp_table(recs: list[Record]) -> Json:
    """`vn varp`: the settings and the cache's `entries`."""
    head = _object(recs[0], ints=("port", "entry_ttl"))
    return {**head, "entries": [ventry(r) for r in recs[1:]]}


def peers(recs: list[Record]) -> list[Json]:
    return [_object(r, ints=("port", "tx_packets", "rx_packets")) for r in recs]


def ports(recs: list[Record]) -> list[Json]:
    """`vn ports`: each port of each vnet, its state and counters, and its link control
    (`link`: the impairments set and `suspended`)."""
    out = []
    for r in recs:
        view = _object(r, ints=("ifindex", *COUNTERS), skip=("link",))
        options = sxp.children(r, "link")
        view["link"] = LinkControl.from_sxp(options[0][1:] if options else []).to_json()
        out.append(view)
    return out


def endpoints(recs: list[Record]) -> list[Json]:
    """`vn endpoints`: each socket endpoint of each vnet, its state and counters."""
    return [_object(r, ints=(*COUNTERS, "drops")) for r in recs]


def configs(recs: list[Record]) -> list[Json]:
    """`vn vnet-list`: persisted configurations; `key_files` is empty for (security none),
    `ports` for a vnet without ports, `endpoints` (each as its words, `udp LOCAL
    REMOTE`) for one without endpoints; `mtu` is always there (the records leave out a
    default one)."""
    out = []
    for r in recs:
        view = _object(r, ints=("mtu",), lists=("key-file",), skip=("port", "endpoint"))
        view["ports"] = [item[1] for item in r[1:] if isinstance(item, list) and item[0] == "port"]
        view["endpoints"] = [" ".join(item[1:]) for item in r[1:]
                             if isinstance(item, list) and item[0] == "endpoint"]
        view.setdefault("mtu", default_mtu(view["encapsulation"], view["security"]))
        out.append(view)
    return out


def key_set(recs: list[Record]) -> Json:
    """The keys a vnet holds (`vn key-add`, `key-use`, `key-del`): `keys` are their ids
    and `key_files` their files, both with the send key first, as in `vn vnets` and
    `vn vnet-list`."""
    (rec,) = recs
    held = sxp.children(rec, "key")
    out = _object(rec, ints=("send",), skip=("key",))
    out["keys"] = [int(sxp.child_value(k, "id")) for k in held]
    out["key_files"] = [sxp.child_value(k, "file") for k in held]
    return out


def stats(recs: list[Record]) -> Json:
    """`vn stats`: {"counters": {NAME: N}, "drops": {REASON: N}}; a name that is absent
    is 0 (the datapaths leave those out)."""
    out: Json = {"counters": {}, "drops": {}}
    for rec in recs:
        out[rec[0]] = {name: int(value) for name, value in rec[1:]}
    return out


def bridges(found: dict[str, list[str]], links: dict[str, dict] | None = None) -> list[Json]:
    """`vn bridges`: each bridge and its ports, with (-l) its `device` from
    vnet.host.netdev.link_summary (null if it went away meanwhile)."""
    out = []
    for name, ports in sorted(found.items()):
        view: Json = {"bridge": name, "interfaces": list(ports)}
        if links is not None:
            info = links.get(name)
            view["device"] = {"name": name, **info} if info is not None else None
        out.append(view)
    return out


# ---- brief lines --------------------------------------------------------------------

def table(rows: list[list[Cell]], indent: str = "") -> list[str]:
    """Rows as lines of aligned columns, two spaces apart, no trailing blanks; a column
    empty in every row takes no room."""
    ncols = max(map(len, rows), default=0)
    rows = [r + [""] * (ncols - len(r)) for r in rows]
    columns = [_column(col) for col in zip(*rows) if any(x != "" for x in col)]
    return [(indent + "  ".join(line)).rstrip() for line in zip(*columns)]


def _column(cells: tuple[Cell, ...]) -> list[str]:
    """One column's cells padded to one width: text to the left, numbers to the right,
    and in a column of labelled numbers the labels and the numbers each lined up."""
    used = [x for x in cells if x != ""]
    if all(isinstance(x, tuple) for x in used):
        lw = max(len(x[0]) for x in used)
        nw = max(len(str(x[1])) for x in used)
        texts = ["" if x == "" else f"{x[0]:<{lw}} {x[1]:>{nw}}" for x in cells]
    else:
        texts = ["" if x == "" else f"{x[0]} {x[1]}" if isinstance(x, tuple) else str(x) for x in cells]
    width = max(map(len, texts))
    if all(isinstance(x, int) for x in used):
        return [t.rjust(width) for t in texts]
    return [t.ljust(width) for t in texts]


def short_id(vid: str) -> str:
    """A vnet id as users type it (`97`), or the long form if it has no short one."""
    return VnetId.parse(vid).short or vid


def _counters(view: Json, names: Iterable[str]) -> list[Cell]:
    return [(n, view[n]) for n in names]


def brief_vnets(views: list[Json], counters: bool) -> list[str]:
    """ID VNETIF BRIDGE ENCAPSULATION SECURITY [keys K,K] [group ADDR]; with -l the device's state,
    MTU and the bridge's other ports last; with -s the counters (on vnetd with a fast path,
    then the path and the fast path's packets); with -a each vnet's
    vifs and VARP entries indented under it."""
    rows: list[list[Cell]] = []
    subs: list[list[list[Cell]]] = []
    for v in views:
        row: list[Cell] = [short_id(v["id"]), v["vnetif"], v["bridge"] or "-", v["encapsulation"],
                           v["security"], "keys " + ",".join(map(str, v["keys"])) if v["keys"] else "",
                           "group " + v["group"] if v.get("group") else ""]
        dev = v.get("device")
        if "device" in v:
            row += [dev["state"], ("mtu", dev["mtu"])] if dev else ["-", ""]
        if counters:
            row += _counters(v, COUNTERS)
            if "fast_rx_packets" in v:  # vnetd's fast path: its part of the packets
                row += [v["path"], ("fast_rx", v["fast_rx_packets"]), ("fast_tx", v["fast_tx_packets"])]
        if dev and dev["interfaces"]:
            row.append("ports " + ",".join(dev["interfaces"]))
        rows.append(row)
        subs.append([["vif", e["vmac"], "local", ("age", e["age"])] for e in v.get("vifs", [])]
                    + [["varp", e["vmac"], e["addr"], ("age", e["age"])] for e in v.get("varp", [])])
    sub_lines = iter(table([r for block in subs for r in block], indent="    "))
    out = []
    for line, block in zip(table(rows), subs):
        out.append(line)
        out += [next(sub_lines) for _ in block]
    return out


def brief_vifs(view: Json, counters: bool = False) -> list[str]:
    """VNET VMAC age N, one line per vif (the table's settings are in `vn vifs`)."""
    return table([[short_id(e["vnet"]), e["vmac"], ("age", e["age"])] for e in view["entries"]])


def brief_varp(view: Json, counters: bool = False) -> list[str]:
    """VNET VMAC ADDR age N, one line per cache entry."""
    return table([[short_id(e["vnet"]), e["vmac"], e["addr"], ("age", e["age"])] for e in view["entries"]])


def brief_peers(views: list[Json], counters: bool) -> list[str]:
    """ADDR:PORT, with -s the packets forwarded to and received from the peer."""
    return table([[f"{p['addr']}:{p['port']}"] + (_counters(p, ("tx_packets", "rx_packets")) if counters else [])
                  for p in views])


def brief_bridges(views: list[Json], counters: bool, long: bool = False) -> list[str]:
    """BRIDGE STATE [MAC mtu N] [counters] PORT,PORT: the bridges' devices must be in
    the views (the state is always shown)."""
    rows: list[list[Cell]] = []
    for b in views:
        dev = b["device"]
        row: list[Cell] = [b["bridge"], dev["state"] if dev else "-"]
        if long:
            row += [dev["mac"], ("mtu", dev["mtu"])] if dev else ["", ""]
        if counters:
            row += _counters(dev, LINK_COUNTERS) if dev else []
        rows.append(row + [",".join(b["interfaces"])])
    return table(rows)


def brief_ports(views: list[Json], counters: bool) -> list[str]:
    """VNET IFNAME STATE [LINK CONTROL], with -s the port's counters: `suspended` and the
    impairments (`loss 10%`, `delay 50ms`, `rate 10mbit`) after the state."""
    return table([[short_id(p["vnet"]), p["ifname"], p["state"]]
                  + _link_words(p.get("link", {}))
                  + (_counters(p, COUNTERS) if counters else []) for p in views])


def _link_words(link: Json) -> list[str]:
    """A port's link control as brief words, empty for none."""
    words = ["suspended"] if link.get("suspended") else []
    for name, unit in (("loss", "%"), ("delay", "ms"), ("jitter", "ms"), ("corrupt", "%")):
        if link.get(name):
            words.append(f"{name} {link[name]:g}{unit}")
    if link.get("rate"):
        words.append(f"rate {format_rate(link['rate'])}")
    return [", ".join(words)]  # a cell in every row, so the counters line up


def brief_endpoints(views: list[Json], counters: bool) -> list[str]:
    """VNET KIND LOCAL REMOTE STATE, with -s the endpoint's counters and drops."""
    return table([[short_id(e["vnet"]), e["kind"], e["local"], e["remote"], e["state"]]
                  + (_counters(e, (*COUNTERS, "drops")) if counters else []) for e in views])


def brief_stats(view: Json, counters: bool = False) -> list[str]:
    """counter NAME N and drop REASON N, one line each."""
    return table([["counter", name, n] for name, n in view["counters"].items()]
                 + [["drop", name, n] for name, n in view["drops"].items()])


def brief_configs(views: list[Json], counters: bool = False) -> list[str]:
    """ID VNETIF BRIDGE ENCAPSULATION SECURITY [KEY-FILE,...] [group ADDR], as `vn -br vnets`."""
    return table([[short_id(c["id"]), c["vnetif"], c["bridge"], c["encapsulation"], c["security"],
                   ",".join(c["key_files"]), "group " + c["group"] if c.get("group") else ""]
                  for c in views])


def brief_keys(view: Json, counters: bool = False) -> list[str]:
    """key ID [send] FILE, one line per held key, the send key first."""
    return table([[("key", k), "send" if k == view["send"] else "", f]
                  for k, f in zip(view["keys"], view["key_files"])])
