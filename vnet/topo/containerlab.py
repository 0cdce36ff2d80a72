"""A containerlab topology file read as a topology, with a small file placing its nodes.

containerlab describes a lab on one host; vnet spreads it over several unchanged.  Used
from the containerlab file: `name`, `prefix`, `topology.nodes` (their names; every node
is a container, `clab-NAME-NODE` as containerlab names them), `topology.links` (brief
`endpoints: ["a:eth1", "b:eth1"]` or the extended `type: veth` form with
`endpoints: [{node: a, interface: eth1}, ...]`) and a link's `mtu`.  Everything else
(kinds, images, configs, binds, mgmt, labels...) is containerlab's business and
ignored.  Links to containerlab's special nodes (host, mgmt-net, macvlan, bridges) are
refused: they do not leave the host.

The hosts file (`--hosts`) says where nodes run (doc/topology.md):

    hosts: {h1: 10.0.0.1, h2: {address: 10.0.0.2}}
    nodes: {spine1: h1, leaf1: h2}      # node -> host
    default: h1                         # the host of nodes not listed (else: an error)
    kind: container                     # or namespace: then netns names them
    netns: "clab-{lab}-{node}"          # the namespace or container name, {lab} {node}
    runtime: docker                     # what is asked for a container's pid
    defaults: {mtu: 9000}               # as a vnet topology's defaults
"""
from __future__ import annotations

from typing import Any

from .load import MDict, MList, Reader, TopologyError, _defaults, _hosts, build_topology, endpoint, parse_yaml
from .model import Control, Node, Segment

_SPECIAL = ("host", "mgmt-net", "macvlan", "ovs-bridge", "bridge")
_MAP_KEYS = ("hosts", "nodes", "default", "kind", "netns", "runtime", "defaults")


def container_name(lab: str, prefix: Any, node: str) -> str:
    """The name containerlab gives a node's container: clab-LAB-NODE; `prefix: ""`
    gives NODE, `prefix: P` P-LAB-NODE (containerlab's rule)."""
    if prefix is None:
        return f"clab-{lab}-{node}"
    return node if prefix == "" else f"{prefix}-{lab}-{node}"


def from_containerlab(doc: MDict, source: str, hosts_file: str | None) -> Any:
    """The Topology of a containerlab file placed by `hosts_file`."""
    r = Reader(source)
    if hosts_file is None:
        raise r.fail(doc.lines["topology"], "topology", "a containerlab file: say which host runs each "
                                                        "node with --hosts FILE (doc/topology.md)")
    if "name" not in doc:
        raise r.fail(doc.line, "name", "missing: the lab's name")
    lab = r.name(doc["name"], doc.lines["name"], "name")
    topo = r.mapping(doc["topology"], doc.lines["topology"], "topology")
    nodes_v = r.mapping(topo.get("nodes"), topo.lines.get("nodes", topo.line), "topology.nodes")

    try:
        from pathlib import Path
        mtext = Path(hosts_file).read_text()
    except OSError as e:
        raise TopologyError(hosts_file, 0, "", f"cannot read: {e.strerror}") from None
    mr = Reader(hosts_file)
    m = mr.mapping(parse_yaml(mtext, hosts_file), 1, "", _MAP_KEYS)
    hosts = _hosts(mr, m)
    placed = mr.mapping(m.get("nodes", MDict()), m.lines.get("nodes", 0), "nodes")
    default = str(m["default"]) if "default" in m else None
    if default is not None and default not in hosts:
        raise mr.fail(m.lines["default"], "default", f"unknown host {default!r}")
    kind = mr.choice(m.get("kind", "container"), m.lines.get("kind", 0), "kind", ("container", "namespace"))
    pattern = mr.text(m["netns"], m.lines["netns"], "netns") if "netns" in m else None
    runtime = mr.text(m["runtime"], m.lines["runtime"], "runtime") if "runtime" in m else "docker"
    for n in placed:
        if n not in nodes_v:
            raise mr.fail(placed.lines[n], f"nodes.{n}", f"no node {n!r} in {source}")

    nodes: dict[str, Node] = {}
    for n in nodes_v:
        line = nodes_v.lines[n]
        name = r.name(n, line, f"topology.nodes.{n}")
        host = str(placed[n]) if n in placed else default
        if host is None:
            raise mr.fail(m.lines.get("nodes", 1), f"nodes.{n}",
                          f"node {n} of {source} has no host (list it, or give a default)")
        if host not in hosts:
            raise mr.fail(placed.lines.get(n, 0), f"nodes.{n}", f"unknown host {host!r}")
        ns = pattern.format(lab=lab, node=name) if pattern else container_name(lab, doc.get("prefix"), name)
        if kind == "namespace":
            nodes[name] = Node(name, host, "namespace", netns=ns, line=line)
        else:
            nodes[name] = Node(name, host, "container", container=ns, runtime=runtime, line=line)

    links_v = r.seq(topo.get("links", MList()), topo.lines.get("links", 0), "topology.links")
    segments = []
    for i, item in enumerate(links_v):
        key, line = f"topology.links[{i}]", links_v.lines[i]
        lk = r.mapping(item, line, key)
        eps_v = r.seq(lk.get("endpoints"), lk.lines.get("endpoints", line), f"{key}.endpoints")
        if len(eps_v) != 2:
            raise r.fail(eps_v.line, f"{key}.endpoints", f"a link has two endpoints, not {len(eps_v)}")
        eps = []
        for j, e in enumerate(eps_v):
            at, eline = f"{key}.endpoints[{j}]", eps_v.lines[j]
            if isinstance(e, MDict):  # extended form
                e = f"{e.get('node')}:{e.get('interface')}"
            node = str(e).split(":", 1)[0]
            if node in _SPECIAL and node not in nodes:
                raise r.fail(eline, at, f"{e!r}: containerlab's special node {node!r} stays on one host; "
                                        "vnet carries links between lab nodes only")
            eps.append(endpoint(r, e, eline, at, nodes))
        mtu = r.mtu(lk["mtu"], lk.lines["mtu"], f"{key}.mtu") if "mtu" in lk else None
        segments.append(Segment(f"{eps[0]} -- {eps[1]}", tuple(eps), False, mtu, None,
                                dict[Any, Control](), line, key, tuple(eps_v.lines)))
    defaults = _defaults(mr, m)
    return build_topology(lab, source, hosts, nodes, segments, defaults)
