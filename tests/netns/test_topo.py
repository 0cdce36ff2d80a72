"""Topologies (doc/topology.md): a leaf-spine lab over three hosts from one file.

Two spines and four leaves, eight links, nodes as namespaces spread over three
simulated hosts running vnetd; `vn topo apply` on each host builds its part.  BIRD in
every node forms OSPF adjacencies on every link (all Full) and every leaf reaches
every other leaf's loopback.  Then: the file's link control is on the right port, a
second apply recreates nothing (interface indexes unchanged), a link suspended live
carries nothing and comes back when resumed, a node restarted by its "runtime"
rejoins its links by itself, a link taken out of the file goes away alone, and
destroy leaves nothing on any host.
The seconds from the first apply to all adjacencies Full are printed."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, needs_root
from json_contract import check

from lab.lab import Lab
from lab.netns import rtnl
from lab.vnethost import VnetHost

pytestmark = [needs_root, pytest.mark.root,
              pytest.mark.skipif(shutil.which("bird") is None, reason="needs BIRD (Debian bird2)")]

#: How long a test may wait for what must happen: generous, CI machines are slow.
DEADLINE = 120.0
SPINES = ("spine1", "spine2")
LEAVES = ("leaf1", "leaf2", "leaf3", "leaf4")
#: Where each node runs: links within one host and across hosts both occur.
PLACE = {"spine1": "h1", "spine2": "h2", "leaf1": "h3", "leaf2": "h3", "leaf3": "h1", "leaf4": "h2"}


def links(drop: tuple[str, str] | None = None) -> list[tuple[int, str, str, str, str]]:
    """(k, spine, spine's interface, leaf, leaf's interface) of each link: spine i's
    eth{j} to leaf j's eth{i}; k numbers the link's /30."""
    out = []
    for i, s in enumerate(SPINES, 1):
        for j, leaf in enumerate(LEAVES, 1):
            if (s, leaf) != drop:
                out.append((4 * (i - 1) + j, s, f"eth{j}", leaf, f"eth{i}"))
    return out


def loopback(node: str) -> str:
    return f"10.255.{0 if node.startswith('spine') else 1}.{node[-1]}"


def topology(lab: Lab, hosts: list[VnetHost], drop: tuple[str, str] | None = None, delay: int = 1) -> str:
    """The lab's file; node namespaces are the lab's (prefixed) names."""
    lines = ["name: leafspine", "hosts:"]
    lines += [f"  h{n}: {{address: {h.ip}}}" for n, h in enumerate(hosts, 1)]
    lines.append("nodes:")
    lines += [f"  {node}: {{host: {host}, kind: namespace, netns: {lab.prefix}-{node}}}"
              for node, host in PLACE.items()]
    lines.append("links:")
    lines += [f"  - endpoints: [{s}:{si}, {leaf}:{li}]" for _, s, si, leaf, li in links(drop)]
    # Link control from the file: the frames towards leaf3 on its link to spine1 wait 1 ms.
    at = lines.index("  - endpoints: [spine1:eth3, leaf3:eth1]")
    lines.insert(at + 1, f'    towards: {{"leaf3:eth1": {{delay: {delay}}}}}')
    return "\n".join(lines) + "\n"


BIRD_CONF = """router id {rid};
protocol device {{ scan time 2; }}
protocol kernel {{ ipv4 {{ import none; export where source = RTS_OSPF; }}; merge paths yes; }}
protocol ospf v2 {{
  ecmp yes;
  ipv4 {{ import all; export none; }};
  area 0 {{
    interface "eth*" {{ type ptp; hello 1; dead 4; }};
    interface "lo" {{ stub yes; }};
  }};
}}
"""


class Node:
    """A lab node: its namespace, its addresses, its BIRD."""

    def __init__(self, lab: Lab, name: str, tmp: Path) -> None:
        self.lab, self.name, self.tmp = lab, name, tmp
        self.sock = tmp / f"bird-{name}.ctl"
        self.bird: subprocess.Popen | None = None
        lab.container(name, forwarding=True)

    @property
    def ns(self) -> str:
        return self.lab.ns_of(self.name)

    def addresses(self, wanted: dict[str, str]) -> None:
        """Loopback and link addresses (`wanted`: interface -> CIDR)."""
        self.lab.run(self.name, ["ip", "addr", "add", f"{loopback(self.name)}/32", "dev", "lo"], check=True)
        for iface, cidr in wanted.items():
            self.lab.run(self.name, ["ip", "addr", "add", cidr, "dev", iface], check=True)

    def start_bird(self) -> None:
        conf = self.tmp / f"bird-{self.name}.conf"
        conf.write_text(BIRD_CONF.format(rid=loopback(self.name)))
        self.bird = self.lab.popen(self.name, ["bird", "-f", "-c", str(conf), "-s", str(self.sock),
                                               "-P", str(self.tmp / f"bird-{self.name}.pid")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def full(self) -> int:
        """How many OSPF neighbors are Full."""
        r = self.lab.run(self.name, ["birdc", "-s", str(self.sock), "show", "ospf", "neighbors"], timeout=15)
        return sum("Full" in line for line in (r.stdout or "").splitlines())

    def ifindexes(self) -> dict[str, int]:
        return self.ifindexes_of(self.lab, self.name)

    @staticmethod
    def ifindexes_of(lab: Lab, name: str) -> dict[str, int]:
        """Interface name -> index in lab node `name`."""
        with rtnl(lab.ns_of(name)) as ipr:
            return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def link_addresses(drop: tuple[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Each node's interface -> CIDR: link k is 10.1.k.0/30, the spine .1, the leaf .2."""
    out: dict[str, dict[str, str]] = {n: {} for n in PLACE}
    for k, s, si, leaf, li in links(drop):
        out[s][si] = f"10.1.{k}.1/30"
        out[leaf][li] = f"10.1.{k}.2/30"
    return out


def wait(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> float:
    """Poll `check` until true; seconds waited."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)
    return time.monotonic() - start


def host_links(h: VnetHost) -> dict[str, int]:
    with rtnl(h.host.ns) as ipr:
        return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def made_here(h: VnetHost) -> set[str]:
    """The interfaces a topology makes in a host: ports (vp...) and vnet devices (vt...)."""
    return {n for n in host_links(h) if n.startswith(("vp", "vt"))}


def ospf_up(nodes: dict[str, Node]) -> dict[str, dict[str, str]]:
    """Address every node, start its BIRD and wait for every adjacency to be Full;
    returns the addresses."""
    addrs = link_addresses()
    for name, node in nodes.items():
        node.addresses(addrs[name])
        node.start_bird()
    want = {n: len(a) for n, a in addrs.items()}
    wait(lambda: all(nodes[n].full() == want[n] for n in nodes), "every OSPF adjacency Full")
    return addrs


def leaves_reach_each_other(lab: Lab) -> None:
    for a in LEAVES:
        for b in LEAVES:
            if a != b:
                lab.wait_ping(a, loopback(b), timeout=DEADLINE)


def test_leaf_spine_ospf(lab: Lab, make_hosts, tmp_path: Path) -> None:
    hosts = make_hosts(3)
    by_name = {f"h{n}": h for n, h in enumerate(hosts, 1)}
    nodes = {name: Node(lab, name, tmp_path) for name in PLACE}
    topo = tmp_path / "leafspine.yaml"
    topo.write_text(topology(lab, hosts))

    start = time.monotonic()
    for h in hosts:  # each host finds itself by its underlay address
        out = h.vn("topo", "apply", str(topo)).stdout
        assert "topology leafspine: host" in out, out
    applied = time.monotonic() - start
    addrs = ospf_up(nodes)
    converged = time.monotonic() - start
    print(f"\nleaf-spine lab (2 spines, 4 leaves, 8 links, 3 hosts): {converged:.1f} s from the first "
          f"apply to all 16 adjacencies Full ({applied:.1f} s of it in the three applies)")
    leaves_reach_each_other(lab)

    # graph: what `vn topo graph` prints is dot that Graphviz draws.
    if shutil.which("dot"):
        dot = hosts[0].vn("topo", "graph", str(topo)).stdout
        drawn = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60)
        assert drawn.returncode == 0 and "<svg" in drawn.stdout, drawn.stderr

    # show: every end up, on every host, for the links it is in.
    view = check("topo-show", json.loads(hosts[0].vn("topo", "show", str(topo), "--json").stdout))
    assert view["host"] == "h1" and len(view["segments"]) == 8
    for seg in view["segments"]:
        states = {e["host"]: e["state"] for e in seg["ends"]}
        if "h1" in states:
            assert set(states.values()) == {"up"}, seg
        else:
            assert set(states.values()) == {"-"}, seg

    # The file's link control is on the port of the end it goes towards, and only there.
    leaf3_port = next(e["attachment"] for seg in view["segments"] for e in seg["ends"]
                      if e["endpoint"] == "leaf3:eth1")
    controls = {p["ifname"]: p["link"] for p in hosts[0].vn_json("ports")}
    assert controls[leaf3_port] == {"delay": 1.0, "suspended": False}
    assert all(c == {"suspended": False} for port, c in controls.items() if port != leaf3_port)

    # A second apply recreates nothing: same interfaces, same indexes, here and in nodes.
    before = {h.name: host_links(h) for h in hosts}
    node_before = {n: node.ifindexes() for n, node in nodes.items()}
    for h in hosts:
        out = h.vn("topo", "apply", str(topo)).stdout
        assert "created" not in out and "made veth" not in out and "deleted" not in out, out
    assert {h.name: host_links(h) for h in hosts} == before
    assert {n: node.ifindexes() for n, node in nodes.items()} == node_before

    # Suspend and resume a link live, from one of its hosts: spine2:eth1 -- leaf1:eth2
    # (link 5: h2 to h3).  Suspending one end stops the link both ways.
    out = by_name["h2"].vn("topo", "link", "set", str(topo), "spine2:eth1", "--suspend").stdout
    assert "spine2:eth1 (port " in out and "suspended" in out and "leaf1:eth2: on host h3" in out, out
    wait(lambda: lab.ping("leaf1", "10.1.5.1", count=1, timeout=1).received == 0, "the suspended link quiet")
    assert lab.ping("leaf1", "10.1.5.1", count=5, interval=0.2, timeout=3).received == 0
    wait(lambda: nodes["spine2"].full() == 3, "spine2's adjacency to leaf1 down")
    by_name["h2"].vn("topo", "link", "set", str(topo), "spine2:eth1", "--resume")
    lab.wait_ping("leaf1", "10.1.5.1", timeout=DEADLINE)
    wait(lambda: nodes["spine2"].full() == 4, "spine2's adjacency to leaf1 back")

    # A node restarted: its namespace deleted and made anew with its interfaces, as a
    # container runtime does (the host ends named as `vn topo show` lists them).
    ports = {e["endpoint"]: e["attachment"] for seg in view["segments"] for e in seg["ends"]}
    leaf4 = nodes["leaf4"]
    h2 = by_name["h2"]
    lab.remove(lab.nodes["leaf4"])
    gone = [ports[f"leaf4:eth{i}"] for i in (1, 2)]
    wait(lambda: not set(gone) & set(host_links(h2)), "leaf4's veths gone with its namespace")
    lab.container("leaf4", forwarding=True)
    for i, port in enumerate(gone, 1):
        subprocess.run(["ip", "-n", h2.host.ns, "link", "add", port, "type", "veth", "peer", "name",
                        f"eth{i}", "netns", leaf4.ns], check=True)
        subprocess.run(["ip", "-n", leaf4.ns, "link", "set", f"eth{i}", "up"], check=True)
    leaf4.addresses(addrs["leaf4"])
    leaf4.start_bird()
    wait(lambda: leaf4.full() == 2 and nodes["spine1"].full() == 4 and nodes["spine2"].full() == 4,
         "leaf4's adjacencies back after its restart")
    lab.wait_ping("leaf4", loopback("leaf1"), timeout=DEADLINE)

    # A link taken out of the file, another's delay changed: only the first's vnet and
    # veths go, the second's port gets its new delay, live (nothing else is made anew).
    dropped = next(s for s in view["segments"] if s["name"] == "spine1:eth1 -- leaf1:eth1")
    topo.write_text(topology(lab, hosts, drop=("spine1", "leaf1"), delay=2))
    before = {h.name: host_links(h) for h in hosts}
    for h in hosts:
        h.vn("topo", "apply", str(topo))
    gone_names = {dropped["vnetif"], *(e["attachment"] for e in dropped["ends"])}
    for h in hosts:
        now = host_links(h)
        assert now == {k: v for k, v in before[h.name].items() if k not in gone_names}, h.name
    assert {p["ifname"]: p["link"] for p in hosts[0].vn_json("ports")}[leaf3_port] == {"delay": 2.0,
                                                                                     "suspended": False}
    ids_now = {v["id"] for h in hosts for v in h.vn_json("vnet-list")}
    assert dropped["vnet"] not in ids_now and len(ids_now) == 7

    # destroy leaves nothing: no vnets, no veths, no records.
    for h in hosts:
        h.vn("topo", "destroy", str(topo))
    for h in hosts:
        assert h.vn_json("vnet-list") == [] and h.vn_json("ports") == []
        assert made_here(h) == set(), h.name
        assert not (h.state_dir / "topology").exists()
    for name, node in nodes.items():
        assert not {n for n in node.ifindexes() if n.startswith("eth")}, name


def test_leaf_spine_ospf_from_the_containerlab_example(lab: Lab, make_hosts, tmp_path: Path) -> None:
    """The same lab from the shipped containerlab file (doc/examples/topology/
    leafspine.clab.yml), its nodes placed as leafspine.hosts.yaml places them: the vnets
    are the native file's, every adjacency comes up Full, every leaf reaches every other
    leaf's loopback, and destroy leaves nothing."""
    hosts = make_hosts(3)
    nodes = {name: Node(lab, name, tmp_path) for name in PLACE}
    clab = ROOT / "doc" / "examples" / "topology" / "leafspine.clab.yml"
    placing = tmp_path / "leafspine.hosts.yaml"  # the example's, with the lab's namespaces
    placing.write_text("hosts: {" + ", ".join(f"h{n}: {h.ip}" for n, h in enumerate(hosts, 1)) + "}\n"
                       "nodes: {" + ", ".join(f"{n}: {h}" for n, h in PLACE.items()) + "}\n"
                       f"kind: namespace\nnetns: \"{lab.prefix}-{{node}}\"\n")
    native = tmp_path / "leafspine.yaml"
    native.write_text(topology(lab, hosts))
    start = time.monotonic()
    for h in hosts:
        h.vn("topo", "apply", str(clab), "--hosts", str(placing))
    ospf_up(nodes)
    print(f"\nleaf-spine lab from the containerlab file: {time.monotonic() - start:.1f} s from the first "
          "apply to all 16 adjacencies Full")
    leaves_reach_each_other(lab)
    clab_view = check("topo-show", json.loads(
        hosts[0].vn("topo", "show", str(clab), "--hosts", str(placing), "--json").stdout))
    native_view = check("topo-show", json.loads(hosts[0].vn("topo", "show", str(native), "--json").stdout))
    assert sorted(s["vnet"] for s in clab_view["segments"]) == sorted(s["vnet"] for s in native_view["segments"])
    for h in hosts:
        h.vn("topo", "destroy", str(clab), "--hosts", str(placing))
    for h in hosts:
        assert h.vn_json("vnet-list") == [] and made_here(h) == set(), h.name


def test_containerlab_file_over_two_hosts(lab: Lab, make_hosts, tmp_path: Path) -> None:
    """A containerlab file spread over two hosts by a hosts file: the vnets are the ones
    the equivalent native file gives, and the nodes reach each other."""
    hosts = make_hosts(2)
    for name in ("r1", "r2"):
        lab.container(name)
    clab = tmp_path / "pair.clab.yml"
    clab.write_text("name: pair\ntopology:\n  nodes:\n    r1: {kind: linux, image: alpine}\n"
                    "    r2: {kind: linux, image: alpine}\n  links:\n"
                    "    - endpoints: [\"r1:eth1\", \"r2:eth1\"]\n")
    placing = tmp_path / "pair.hosts.yaml"
    placing.write_text(f"hosts: {{h1: {hosts[0].ip}, h2: {hosts[1].ip}}}\nnodes: {{r1: h1, r2: h2}}\n"
                       f"kind: namespace\nnetns: \"{lab.prefix}-{{node}}\"\n")
    native = tmp_path / "pair.yaml"
    native.write_text(f"name: pair\nhosts: {{h1: {hosts[0].ip}, h2: {hosts[1].ip}}}\nnodes:\n"
                      f"  r1: {{host: h1, netns: {lab.prefix}-r1}}\n  r2: {{host: h2, netns: {lab.prefix}-r2}}\n"
                      "links:\n  - endpoints: [r1:eth1, r2:eth1]\n")
    for h in hosts:
        h.vn("topo", "apply", str(clab), "--hosts", str(placing))
    lab.run("r1", ["ip", "addr", "add", "10.9.0.1/24", "dev", "eth1"], check=True)
    lab.run("r2", ["ip", "addr", "add", "10.9.0.2/24", "dev", "eth1"], check=True)
    lab.wait_ping("r1", "10.9.0.2", timeout=DEADLINE)
    clab_view = check("topo-show", json.loads(
        hosts[0].vn("topo", "show", str(clab), "--hosts", str(placing), "--json").stdout))
    native_view = check("topo-show", json.loads(hosts[0].vn("topo", "show", str(native), "--json").stdout))
    assert [s["vnet"] for s in clab_view["segments"]] == [s["vnet"] for s in native_view["segments"]]
    assert [e["state"] for e in clab_view["segments"][0]["ends"]] == ["up", "up"]
    # The native file names the same vnets, veths and record: applying it changes nothing.
    before = host_links(hosts[0])
    out = hosts[0].vn("topo", "apply", str(native)).stdout
    assert "created" not in out and "made veth" not in out, out
    assert host_links(hosts[0]) == before
    for h in hosts:
        h.vn("topo", "destroy", str(clab), "--hosts", str(placing))
        assert h.vn_json("vnet-list") == [] and made_here(h) == set()


def test_failed_apply_leaves_nothing(lab: Lab, make_hosts, tmp_path: Path) -> None:
    """A step that fails (the datapath refuses a port: the host's underlay interface,
    which has an address) undoes what the run made: no vnet, no veth, no record."""
    (h,) = make_hosts(1)
    lab.container("n1")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\nhosts: {{h1: {h.ip}}}\nnodes:\n  n1: {{host: h1, netns: {lab.prefix}-n1}}\n"
                   "  n2: {host: h1}\n  uplink: {host: h1, kind: interface}\n"
                   "links:\n  - endpoints: [n1:eth1, n2:eth1]\n  - endpoints: [n1:eth2, uplink:eth0]\n")
    r = h.vn("topo", "apply", str(bad), check=False)
    assert r.returncode == 1 and "eth0" in r.stderr, r
    assert "rolled back" in r.stdout, r.stdout
    assert h.vn_json("vnet-list") == [] and made_here(h) == set()
    assert not (h.state_dir / "topology").exists()
    assert not [n for n in Node.ifindexes_of(lab, "n1") if n.startswith("eth")]


def test_qemu_node_joins_by_the_hypervisor_helpers_nic(lab: Lab, make_hosts, tmp_path: Path) -> None:
    """A QEMU node's NIC is a socket endpoint: the VM started with the arguments
    `vn topo hypervisor` prints (played by lab/qemu_socket_peer.py, QEMU's framing)
    reaches a namespace node on the other host; `vn topo show` says both ends are up,
    and the other host's end unreachable once that host is gone."""
    from netns.test_qemu_endpoints import start_peer

    hosts = make_hosts(2)
    lab.container("r1")
    vm = lab.vm("vm1", hosts[1].host, "none", "10.9.1.2/24", plugged=False)
    lab.run(hosts[1].host, ["ip", "link", "set", "vvm1", "up"], check=True)
    topo = tmp_path / "vm.yaml"
    topo.write_text(f"name: vmlab\nhosts: {{h1: {hosts[0].ip}, h2: {hosts[1].ip}}}\nnodes:\n"
                    f"  r1: {{host: h1, netns: {lab.prefix}-r1}}\n"
                    "  vm1: {host: h2, kind: qemu, base-port: 41000}\n"
                    "links:\n  - endpoints: [r1:eth1, vm1:eth0]\n")
    for h in hosts:
        h.vn("topo", "apply", str(topo))
    args = hosts[1].vn("topo", "hypervisor", str(topo), "vm1").stdout.split()
    netdev = dict(kv.split("=", 1) for kv in args[1].split(",")[1:])
    assert args[0] == "-netdev" and args[1].startswith("dgram,id=eth0,")
    peer = start_peer(lab, ["--dgram", f"{netdev['local.host']}:{netdev['local.port']}",
                            f"{netdev['remote.host']}:{netdev['remote.port']}"],
                      hosts[1].host.ns, "vvm1", host=hosts[1].host)
    try:
        lab.run("r1", ["ip", "addr", "add", "10.9.1.1/24", "dev", "eth1"], check=True)
        lab.wait_ping("r1", vm.ip, timeout=DEADLINE)
        view = check("topo-show", json.loads(hosts[1].vn("topo", "show", str(topo), "--json").stdout))
        ends = {e["endpoint"]: e for e in view["segments"][0]["ends"]}
        assert ends["vm1:eth0"]["attachment"] == "udp 127.0.0.1:41000 127.0.0.1:41001"
        assert ends["vm1:eth0"]["state"] == "up" and ends["r1:eth1"]["state"] == "up"
        # h1 gone (its vnetd killed), what h2 learned from it forgotten: unreachable.
        hosts[0].kill()
        hosts[1].vn("varp-flush")
        view = check("topo-show", json.loads(hosts[1].vn("topo", "show", str(topo), "--json").stdout))
        ends = {e["endpoint"]: e for e in view["segments"][0]["ends"]}
        assert ends["r1:eth1"]["state"] == "unreachable" and ends["vm1:eth0"]["state"] == "up"
        hosts[0].start()
    finally:
        peer.kill()
        peer.wait()
    for h in hosts:
        h.vn("topo", "destroy", str(topo))
        assert h.vn_json("vnet-list") == [] and h.vn_json("endpoints") == []


def test_mtu_change_remakes_the_vnet_and_keeps_the_veths(lab: Lab, make_hosts, tmp_path: Path) -> None:
    """A link's MTU changed in the file: apply makes its vnet anew with the MTU, keeps
    the veths (same indexes) and gives the node's end the MTU too; jumbo frames cross."""
    hosts = make_hosts(2)
    for name in ("r1", "r2"):
        lab.container(name)
    topo = tmp_path / "pair.yaml"
    text = (f"name: mtu\nhosts: {{h1: {hosts[0].ip}, h2: {hosts[1].ip}}}\nnodes:\n"
            f"  r1: {{host: h1, netns: {lab.prefix}-r1}}\n  r2: {{host: h2, netns: {lab.prefix}-r2}}\n"
            "links:\n  - endpoints: [r1:eth1, r2:eth1]\n")
    topo.write_text(text)
    for h in hosts:
        h.vn("topo", "apply", str(topo))
    lab.run("r1", ["ip", "addr", "add", "10.9.2.1/24", "dev", "eth1"], check=True)
    lab.run("r2", ["ip", "addr", "add", "10.9.2.2/24", "dev", "eth1"], check=True)
    lab.wait_ping("r1", "10.9.2.2", timeout=DEADLINE)
    before = {n: Node.ifindexes_of(lab, n)["eth1"] for n in ("r1", "r2")}
    topo.write_text(text + "    mtu: 9000\n")
    for h in hosts:
        out = h.vn("topo", "apply", str(topo)).stdout
        assert "made anew" in out and "MTU 9000" in out, out
    assert {n: Node.ifindexes_of(lab, n)["eth1"] for n in ("r1", "r2")} == before
    for n in ("r1", "r2"):
        with rtnl(lab.ns_of(n)) as ipr:
            assert ipr.link("get", ifname="eth1")[0].get_attr("IFLA_MTU") == 9000, n
    wait(lambda: lab.run("r1", ["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "8972",
                                "10.9.2.2"]).returncode == 0, "a 9000-byte ping across")
    for h in hosts:
        h.vn("topo", "destroy", str(topo))
