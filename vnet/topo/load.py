"""Loading a topology file: YAML with line marks, checked before anything is built.

Every error names the file, the line and the key (`lab.yaml:12: links[3].endpoints[1]:
unknown node 'leaf9'`), so a mistake in a long lab file is found at once.  A file with a
top-level `topology:` key is a containerlab file (vnet.topo.containerlab)."""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vnet.errors import VnetError
from vnet.model.addr import ifname_check
from vnet.model.config import check_mtu

from . import ids
if TYPE_CHECKING:
    import yaml

from .model import (CONTROL_KEYS, NETNS_KINDS, NODE_KINDS, SOCKET_KINDS, Control, Defaults, Endpoint,
                    Host, Node, Segment, Topology)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RATE = re.compile(r"^\d+(\.\d+)?([kmg]?bit|[kmg]?bps)$", re.IGNORECASE)


class TopologyError(VnetError, ValueError):
    """A topology file that cannot be used; the message names file, line and key."""

    def __init__(self, source: str, line: int, key: str, problem: str) -> None:
        self.source, self.line, self.key, self.problem = source, line, key, problem
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class MDict(dict):
    """A YAML mapping with the line of each key (1-based) and of itself."""

    line: int = 0
    lines: dict[Any, int]


class MList(list):
    """A YAML sequence with the line of each item and of itself."""

    line: int = 0
    lines: list[int]


def _marked(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        out = MDict()
        out.line, out.lines = node.start_mark.line + 1, {}
        loader.flatten_mapping(node)  # merge keys (<<: *anchor) as PyYAML does
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise yaml.MarkedYAMLError(problem=f"a key must be a scalar, not {key!r}",
                                           problem_mark=knode.start_mark)
            out[key] = _marked(loader, vnode)
            out.lines[key] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = MList(_marked(loader, n) for n in node.value)
        seq.line, seq.lines = node.start_mark.line + 1, [n.start_mark.line + 1 for n in node.value]
        return seq
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, source: str) -> Any:
    """The document in `text` with line marks; a syntax error names file and line.
    PyYAML is imported here, not with the module: only `vn topo` needs it, and every
    other command (and vnetd) starts without it."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _marked(loader, node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise TopologyError(source, line, "", f"not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise TopologyError(source, 0, "", f"not valid YAML: {e}") from None
    finally:
        loader.dispose()


def load(path: str | os.PathLike, hosts_file: str | None = None) -> Topology:
    """Load and check a topology file (native, or containerlab with `hosts_file`)."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise TopologyError(source, 0, "", f"cannot read: {e.strerror}") from None
    doc = parse_yaml(text, source)
    if isinstance(doc, MDict) and "topology" in doc:
        from .containerlab import from_containerlab
        return from_containerlab(doc, source, hosts_file)
    if hosts_file is not None:
        raise TopologyError(source, 0, "", "--hosts maps a containerlab file's nodes to hosts; this "
                                           "file is a vnet topology, whose nodes name their hosts")
    return build(doc, source)


class Reader:
    """Checks values of one file, raising TopologyError with their place."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int, key: str, problem: str) -> TopologyError:
        return TopologyError(self.source, line, key, problem)

    def mapping(self, value: Any, line: int, key: str, allowed: tuple[str, ...] | None = None) -> MDict:
        if not isinstance(value, MDict):
            raise self.fail(line, key, f"expected a mapping, got {_kind(value)}")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    raise self.fail(value.lines[k], _join(key, k),
                                    f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def seq(self, value: Any, line: int, key: str) -> MList:
        if not isinstance(value, MList):
            raise self.fail(line, key, f"expected a list, got {_kind(value)}")
        return value

    def name(self, value: Any, line: int, key: str) -> str:
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not _NAME.match(str(value)):
            raise self.fail(line, key, f"{value!r} is not a name (letters, digits, '_', '.', '-')")
        return str(value)

    def text(self, value: Any, line: int, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(line, key, f"expected a string, got {_kind(value)}")
        return value

    def number(self, value: Any, line: int, key: str, low: float, high: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(line, key, f"expected a number, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"{low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise self.fail(line, key, f"{value!r} is out of range ({bound})")
        return float(value)

    def choice(self, value: Any, line: int, key: str, valid: tuple[str, ...]) -> str:
        if value not in valid:
            raise self.fail(line, key, f"{value!r} is not one of {', '.join(valid)}")
        return str(value)

    def address(self, value: Any, line: int, key: str) -> str:
        try:
            return str(ipaddress.IPv4Address(str(value)))
        except ValueError:
            raise self.fail(line, key, f"{value!r} is not an IPv4 address") from None

    def mtu(self, value: Any, line: int, key: str) -> int:
        try:
            return check_mtu(value)
        except VnetError as e:
            raise self.fail(line, key, str(e)) from None

    def control(self, m: MDict, key: str) -> Control:
        """The link control keys of mapping `m` (others are the caller's business)."""
        got: dict[str, Any] = {}
        for k in CONTROL_KEYS:
            if k not in m:
                continue
            v, line, at = m[k], m.lines[k], _join(key, k)
            if k in ("loss", "corrupt"):
                got[k] = self.number(v, line, at, 0, 100)
            elif k in ("delay", "jitter"):
                got[k] = self.number(v, line, at, 0)
            elif k == "rate":
                if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and _RATE.match(v))):
                    raise self.fail(line, at, f"{v!r} is not a rate (bits per second, or like "
                                              f"10mbit, 512kbit, 1gbit)")
                got[k] = str(v)
            elif not isinstance(v, bool):
                raise self.fail(line, at, f"expected yes or no, got {v!r}")
            else:
                got[k] = v
        control = Control(**got)
        try:
            control.to_link()  # the datapath's own rules (vnet.model.linkctl)
        except ValueError as e:
            raise self.fail(m.line, key, str(e)) from None
        return control


def _kind(value: Any) -> str:
    if isinstance(value, MDict):
        return "a mapping"
    if isinstance(value, MList):
        return "a list"
    return "nothing" if value is None else repr(value)


def _join(key: str, sub: object) -> str:
    return f"{key}[{sub}]" if isinstance(sub, int) else f"{key}.{sub}" if key else str(sub)


_TOP = ("name", "hosts", "nodes", "links", "lans", "defaults")
_NODE = ("host", "kind", "netns", "container", "runtime", "domain", "base-port")
_SEGMENT = ("endpoints", "mtu", "id", "towards", *CONTROL_KEYS)


def build(doc: Any, source: str) -> Topology:
    """A Topology from a parsed native file, every reference checked."""
    r = Reader(source)
    top = r.mapping(doc, 1, "", _TOP)
    if "name" not in top:
        raise r.fail(top.line, "name", "missing: the lab's name (vnet ids are derived from it)")
    name = r.name(top["name"], top.lines["name"], "name")
    hosts = _hosts(r, top)
    nodes = _nodes(r, top, hosts)
    defaults = _defaults(r, top)
    segments: list[Segment] = []
    links = r.seq(top.get("links", MList()), top.lines.get("links", 0), "links")
    for i, item in enumerate(links):
        segments.append(_segment(r, item, links.lines[i], f"links[{i}]", nodes, lan=None))
    lans = r.mapping(top.get("lans", MDict()), top.lines.get("lans", 0), "lans")
    for lan_name, item in lans.items():
        key = f"lans.{lan_name}"
        segments.append(_segment(r, item, lans.lines[lan_name], key, nodes,
                                 lan=r.name(lan_name, lans.lines[lan_name], key)))
    return build_topology(name, source, hosts, nodes, segments, defaults)


def build_topology(name: str, source: str, hosts: dict[str, Host], nodes: dict[str, Node],
                   segments: list[Segment], defaults: Defaults) -> Topology:
    """The Topology, after the checks across entries (check)."""
    topo = Topology(name, source, hosts, nodes, tuple(segments), defaults)
    check(topo)
    return topo


def _hosts(r: Reader, top: MDict) -> dict[str, Host]:
    if "hosts" not in top:
        raise r.fail(top.line, "hosts", "missing: the lab's hosts and their underlay addresses")
    m = r.mapping(top["hosts"], top.lines["hosts"], "hosts")
    hosts = {}
    for hname, v in m.items():
        line, key = m.lines[hname], f"hosts.{hname}"
        hname = r.name(hname, line, key)
        if isinstance(v, MDict):
            r.mapping(v, line, key, ("address",))
            if "address" not in v:
                raise r.fail(line, f"{key}.address", "missing: the host's underlay address")
            v, line = v["address"], v.lines["address"]
            key += ".address"
        hosts[hname] = Host(hname, r.address(v, line, key), line)
    return hosts


def _nodes(r: Reader, top: MDict, hosts: dict[str, Host]) -> dict[str, Node]:
    m = r.mapping(top.get("nodes"), top.lines.get("nodes", top.line), "nodes")
    nodes = {}
    for nname, v in m.items():
        line, key = m.lines[nname], f"nodes.{nname}"
        nname = r.name(nname, line, key)
        v = r.mapping(v, line, key, _NODE)
        if "host" not in v:
            raise r.fail(line, f"{key}.host", "missing: the host the node runs on")
        host = str(v["host"])
        if host not in hosts:
            raise r.fail(v.lines["host"], f"{key}.host",
                         f"unknown host {host!r} (hosts: {', '.join(sorted(hosts))})")
        kind = r.choice(v.get("kind", "namespace"), v.lines.get("kind", line), f"{key}.kind", NODE_KINDS)
        extra: dict[str, Any] = {}
        for k, attr in (("netns", "netns"), ("container", "container"), ("runtime", "runtime"),
                        ("domain", "domain")):
            if k in v:
                extra[attr] = r.text(v[k], v.lines[k], f"{key}.{k}")
        if "base-port" in v:
            extra["base_port"] = int(r.number(v["base-port"], v.lines["base-port"], f"{key}.base-port",
                                              1, 65000))
        elif kind in SOCKET_KINDS:
            raise r.fail(line, f"{key}.base-port", f"missing: a {kind} node's NICs are UDP sockets "
                                                   "numbered from its base-port")
        nodes[nname] = Node(nname, host, kind, line=line, **extra)
    return nodes


def _defaults(r: Reader, top: MDict) -> Defaults:
    if "defaults" not in top:
        return Defaults()
    d = r.mapping(top["defaults"], top.lines["defaults"], "defaults",
                  ("mtu", "encapsulation", "security", "key-file"))
    got: dict[str, Any] = {}
    if "mtu" in d:
        got["mtu"] = r.mtu(d["mtu"], d.lines["mtu"], "defaults.mtu")
    if "encapsulation" in d:
        got["encapsulation"] = r.choice(d["encapsulation"], d.lines["encapsulation"],
                                        "defaults.encapsulation", ("udp", "etherip"))
    if "security" in d:
        got["security"] = r.choice(d["security"], d.lines["security"], "defaults.security",
                                   ("none", "auth", "conf"))
    if "key-file" in d:
        path = r.text(d["key-file"], d.lines["key-file"], "defaults.key-file")
        got["key_file"] = os.path.join(os.path.dirname(os.path.abspath(r.source)), path)
    return Defaults(**got)


def endpoint(r: Reader, value: Any, line: int, key: str, nodes: dict[str, Node]) -> Endpoint:
    """`node:iface`, the node known and the interface name valid."""
    if not isinstance(value, str) or value.count(":") != 1:
        raise r.fail(line, key, f"{value!r} is not an endpoint: write NODE:INTERFACE")
    node, iface = value.split(":")
    if node not in nodes:
        raise r.fail(line, key, f"unknown node {node!r} in endpoint {value!r}")
    try:
        ifname_check(iface, "interface name")
    except ValueError as e:
        raise r.fail(line, key, f"endpoint {value!r}: {e}") from None
    return Endpoint(node, iface)


def _segment(r: Reader, item: Any, line: int, key: str, nodes: dict[str, Node],
             lan: str | None) -> Segment:
    m = r.mapping(item, line, key, _SEGMENT)
    if "endpoints" not in m:
        raise r.fail(line, f"{key}.endpoints", "missing: the link's ends, [NODE:IF, NODE:IF]")
    eps_v = r.seq(m["endpoints"], m.lines["endpoints"], f"{key}.endpoints")
    eps = tuple(endpoint(r, v, eps_v.lines[i], f"{key}.endpoints[{i}]", nodes) for i, v in enumerate(eps_v))
    if lan is None and len(eps) != 2:
        raise r.fail(eps_v.line, f"{key}.endpoints", f"a link has two endpoints, not {len(eps)} "
                                                     "(several on one segment: a LAN, under lans:)")
    if lan is not None and len(eps) < 2:
        raise r.fail(eps_v.line, f"{key}.endpoints", "a LAN needs at least two endpoints")
    if len(set(eps)) != len(eps):
        raise r.fail(eps_v.line, f"{key}.endpoints", "an endpoint is listed twice")
    mtu = r.mtu(m["mtu"], m.lines["mtu"], f"{key}.mtu") if "mtu" in m else None
    seg_id = None
    if "id" in m:
        from vnet.model.vnetid import InvalidVnetId, VnetId, check_usable
        try:
            seg_id = str(check_usable(VnetId.parse(str(m["id"]))))
        except InvalidVnetId as e:
            raise r.fail(m.lines["id"], f"{key}.id", str(e)) from None
    both = r.control(m, key)
    control = {ep: both for ep in eps} if both.items() else {}
    if "towards" in m:
        t = r.mapping(m["towards"], m.lines["towards"], f"{key}.towards")
        for ep_text, opts in t.items():
            at = f"{key}.towards.{ep_text}"
            ep = endpoint(r, ep_text, t.lines[ep_text], at, nodes)
            if ep not in eps:
                raise r.fail(t.lines[ep_text], at, f"{ep} is not an end of this link")
            o = r.mapping(opts, t.lines[ep_text], at, CONTROL_KEYS)
            merged = {**both.items(), **r.control(o, at).items()}
            control[ep] = Control(**merged)  # type: ignore[arg-type]
    name = lan if lan is not None else f"{eps[0]} -- {eps[1]}"
    return Segment(name, eps, lan is not None, mtu, seg_id, control, line, key, tuple(eps_v.lines))


def check(topo: Topology) -> None:
    """What no single entry shows: an interface on two segments, two segments on one
    vnet id, a namespace node's interface name."""
    r = Reader(topo.source)
    used: dict[Endpoint, Segment] = {}
    by_id: dict[str, Segment] = {}
    for seg in topo.segments:
        for i, ep in enumerate(seg.endpoints):
            if ep in used:
                other = used[ep]
                raise r.fail(seg.lines[i] if seg.lines else seg.line, f"{_seg_key(seg)}.endpoints[{i}]",
                             f"interface {ep} is used twice: by {_what(other)} (line {other.line}) and "
                             f"by {_what(seg)}")
            used[ep] = seg
        vid = str(ids.segment_id(topo, seg))
        if vid in by_id:
            other = by_id[vid]
            raise r.fail(seg.line, _seg_key(seg), f"vnet id collision: {_what(other)} (line {other.line}) "
                                                  f"and {_what(seg)} both have vnet id {vid}")
        by_id[vid] = seg
    for node in topo.nodes.values():
        if node.kind in NETNS_KINDS or node.kind == "interface":
            continue
        if node.kind in SOCKET_KINDS and node.base_port is not None:
            n = len(ids.socket_nics(topo, node))
            if node.base_port + 2 * n - 1 > 65535:
                raise r.fail(node.line, f"nodes.{node.name}.base-port",
                             f"{n} NICs need ports {node.base_port}..{node.base_port + 2 * n - 1}")


def _seg_key(seg: Segment) -> str:
    return seg.key or (f"lans.{seg.name}" if seg.lan else f"link {seg.name}")


def _what(seg: Segment) -> str:
    return f"LAN {seg.name}" if seg.lan else f"link {seg.name}"
