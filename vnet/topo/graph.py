"""`vn topo graph`: the topology in Graphviz's dot language, hosts as clusters."""
from __future__ import annotations

import shutil
import subprocess

from vnet.errors import VnetError

from .model import Topology

#: Output formats `dot` is asked for when one is given.
FORMATS = ("dot", "svg", "png")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(topo: Topology) -> str:
    """Nodes grouped by host; a link is an edge labelled with its interfaces, a LAN a
    small point node with an edge to each member."""
    out = [f"graph {_q(topo.name)} {{", "  node [shape=box, style=rounded];"]
    for i, host in enumerate(sorted(topo.hosts)):
        out.append(f"  subgraph {_q('cluster_' + host)} {{")
        out.append(f"    label={_q(host + ' (' + topo.hosts[host].address + ')')};")
        for node in sorted(n for n, v in topo.nodes.items() if v.host == host):
            # dot's own line break (\n inside the quotes); names are plain (load checks them).
            out.append(f'    {_q(node)} [label="{node}\\n{topo.nodes[node].kind}"];')
        out.append("  }")
    for seg in topo.segments:
        if seg.lan:
            out.append(f"  {_q('lan:' + seg.name)} [shape=ellipse, label={_q(seg.name)}];")
            for ep in seg.endpoints:
                out.append(f"  {_q(ep.node)} -- {_q('lan:' + seg.name)} [taillabel={_q(ep.iface)}];")
        else:
            a, b = seg.endpoints
            attrs = f"taillabel={_q(a.iface)}, headlabel={_q(b.iface)}"
            if any(c.suspended for c in seg.control.values()):
                attrs += ", style=dashed"
            out.append(f"  {_q(a.node)} -- {_q(b.node)} [{attrs}];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(text: str, fmt: str) -> bytes:
    """`text` rendered by Graphviz's `dot` as `fmt` (svg, png)."""
    exe = shutil.which("dot")
    if exe is None:
        raise VnetError(f"--format {fmt} needs Graphviz's dot, which is not installed "
                        "(apt-get install graphviz); without --format the dot text is printed")
    r = subprocess.run([exe, f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=60)
    if r.returncode != 0:
        raise VnetError(f"dot -T{fmt} failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout
