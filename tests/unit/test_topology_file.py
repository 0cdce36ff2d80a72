"""Topology files (doc/topology.md): loading, the errors with file, line and key, the
derived ids, containerlab files, the JSON Schema, graph and hypervisor output."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from json_contract import check
from jsonschema import Draft202012Validator, FormatChecker

from vnet.model.vnetid import VnetId
from vnet.topo import apply, graph, hypervisor, ids, load, show
from vnet.topo.model import Endpoint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "doc" / "examples" / "topology"
SCHEMA = json.loads((ROOT / "doc" / "schema" / "topology.schema.json").read_text())

GOOD = """\
name: demo
hosts:
  h1: {address: 10.0.0.1}
  h2: 10.0.0.2
nodes:
  a: {host: h1}
  b: {host: h2, kind: namespace, netns: lab-b}
  vm: {host: h2, kind: qemu, base-port: 20000}
  up: {host: h1, kind: interface}
links:
  - endpoints: [a:eth1, b:eth1]
    loss: 1
    towards: {"b:eth1": {delay: 5}}
  - endpoints: [a:eth2, vm:eth0]
  - endpoints: [b:eth2, up:enp3s0]
lans:
  mgmt: {endpoints: [a:eth3, b:eth3, vm:eth1], mtu: 9000}
"""


def write(tmp_path: Path, text: str, name: str = "lab.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error(tmp_path: Path, text: str) -> load.TopologyError:
    with pytest.raises(load.TopologyError) as e:
        load.load(write(tmp_path, text))
    return e.value


def test_loads_hosts_nodes_links_lans(tmp_path: Path) -> None:
    t = load.load(write(tmp_path, GOOD))
    assert t.name == "demo" and t.hosts["h2"].address == "10.0.0.2"
    assert [s.name for s in t.segments] == ["a:eth1 -- b:eth1", "a:eth2 -- vm:eth0", "b:eth2 -- up:enp3s0",
                                            "mgmt"]
    link = t.segments[0]
    assert link.control[Endpoint("a", "eth1")].items() == {"loss": 1.0}
    assert link.control[Endpoint("b", "eth1")].items() == {"loss": 1.0, "delay": 5.0}
    assert t.segments[3].lan and t.segments[3].mtu == 9000
    assert [s.name for s in t.segments_of("h1")] == [s.name for s in t.segments]


def test_ids_are_derived_alike_everywhere_and_clear_of_short_ids(tmp_path: Path) -> None:
    a, b = Endpoint("a", "eth1"), Endpoint("b", "eth1")
    vid = ids.derived_id("demo", (a, b))
    assert vid == ids.derived_id("demo", (b, a))  # the order of the ends does not matter
    assert vid != ids.derived_id("other", (a, b))  # another lab, another id
    assert vid.value >> 127 == 1 and vid.short is None
    # Pinned: a host running another version must derive the same id.
    assert str(vid) == str(ids.derived_id("demo", (a, b)))
    t = load.load(write(tmp_path, GOOD))
    assert str(ids.segment_id(t, t.segments[0])) == str(vid)
    assert ids.vnetif_name(vid) == f"vt{vid.value & (2**48 - 1):012x}" and len(ids.vnetif_name(vid)) == 14
    assert len(ids.port_name("demo", a)) == 12


def test_each_host_builds_only_its_part(tmp_path: Path) -> None:
    t = load.load(write(tmp_path, GOOD))
    h1, h2 = apply.part(t, "h1"), apply.part(t, "h2")
    assert len(h1.vnets) == 4 and len(h2.vnets) == 4
    cfg1 = h1.vnets[str(ids.segment_id(t, t.segments[2]))][1]
    assert cfg1.ports == ("enp3s0",) and cfg1.bridge is None  # a plain interface is the port
    cfg2 = h2.vnets[str(ids.segment_id(t, t.segments[1]))][1]
    assert cfg2.ports == () and [str(e) for e in cfg2.endpoints] == ["udp 127.0.0.1:20000 127.0.0.1:20001"]
    lan = h2.vnets[str(ids.segment_id(t, t.segments[3]))][1]
    assert lan.mtu == 9000 and len(lan.ports) == 1 and len(lan.endpoints) == 1
    assert {v.node for v in h1.veths.values()} == {"a"} and len(h1.veths) == 3
    assert all(v.node == "b" for v in h2.veths.values())


@pytest.mark.parametrize("change, line, key, words", [
    ("a:eth2, vm:eth0", 14, "links[1].endpoints[0]", "unknown node 'zz'"),
    ("b:eth2, up:enp3s0", 15, "links[2].endpoints[0]", "interface a:eth1 is used twice"),
])
def test_bad_endpoints_name_file_line_key(tmp_path: Path, change: str, line: int, key: str, words: str) -> None:
    new = {"a:eth2, vm:eth0": "zz:eth2, vm:eth0", "b:eth2, up:enp3s0": "a:eth1, up:enp3s0"}[change]
    e = error(tmp_path, GOOD.replace(change, new))
    assert (e.line, e.key) == (line, key) and words in e.problem, str(e)
    assert str(e).startswith(f"{tmp_path / 'lab.yaml'}:{line}: {key}: ")


def test_errors(tmp_path: Path) -> None:
    e = error(tmp_path, GOOD.replace("a: {host: h1}", "a: {host: h9}"))
    assert (e.line, e.key) == (6, "nodes.a.host") and "unknown host 'h9'" in e.problem
    e = error(tmp_path, GOOD.replace("links:", "links: [\n"))
    assert "not valid YAML" in e.problem and e.line > 0
    e = error(tmp_path, GOOD.replace("    loss: 1", "    loss: 150"))
    assert (e.line, e.key) == (12, "links[0].loss") and "out of range" in e.problem
    e = error(tmp_path, GOOD.replace("    loss: 1", "    los: 1"))
    assert e.key == "links[0].los" and "unknown key" in e.problem
    e = error(tmp_path, GOOD.replace("[a:eth2, vm:eth0]", "[a:eth2, vm:eth0, b:eth9]"))
    assert "two endpoints, not 3" in e.problem
    e = error(tmp_path, GOOD.replace("kind: qemu, base-port: 20000", "kind: qemu"))
    assert e.key == "nodes.vm.base-port"
    e = error(tmp_path, GOOD.replace("name: demo\n", ""))
    assert e.key == "name" and "missing" in e.problem
    e = error(tmp_path, GOOD.replace('"b:eth1": {delay: 5}', '"b:eth2": {delay: 5}'))
    assert "not an end of this link" in e.problem


def test_vnet_id_collision_names_both_links(tmp_path: Path) -> None:
    text = GOOD.replace("  - endpoints: [a:eth2, vm:eth0]", "  - endpoints: [a:eth2, vm:eth0]\n    id: 7")
    text = text.replace("  - endpoints: [b:eth2, up:enp3s0]", "  - endpoints: [b:eth2, up:enp3s0]\n    id: '7'")
    e = error(tmp_path, text)
    assert "vnet id collision" in e.problem and "a:eth2 -- vm:eth0" in e.problem
    assert "b:eth2 -- up:enp3s0" in e.problem and str(VnetId.parse("7")) in e.problem


def test_containerlab_file_gives_the_native_files_vnets() -> None:
    native = load.load(EXAMPLES / "leafspine.yaml")
    clab = load.load(EXAMPLES / "leafspine.clab.yml", str(EXAMPLES / "leafspine.hosts.yaml"))
    assert clab.nodes["leaf1"].kind == "container" and clab.nodes["leaf1"].container == "clab-leafspine-leaf1"
    for host in native.hosts:
        a, b = apply.part(native, host), apply.part(clab, host)
        assert sorted(a.vnets) == sorted(b.vnets), host
        assert {v: c.ports for v, (_, c) in a.vnets.items()} == {v: c.ports for v, (_, c) in b.vnets.items()}
        assert sorted(a.veths) == sorted(b.veths)


def test_containerlab_errors(tmp_path: Path) -> None:
    clab = EXAMPLES / "leafspine.clab.yml"
    with pytest.raises(load.TopologyError, match="--hosts"):
        load.load(clab)
    hosts = write(tmp_path, "hosts: {h1: 10.0.0.1}\nnodes: {spine1: h1}\n", "hosts.yaml")
    with pytest.raises(load.TopologyError, match=r"hosts.yaml:2: nodes.spine2: node spine2 .* has no host"):
        load.load(clab, str(hosts))
    special = write(tmp_path, "name: x\ntopology:\n  nodes: {a: {}}\n  links:\n"
                              "    - endpoints: [a:eth1, host:veth9]\n", "x.clab.yml")
    hosts = write(tmp_path, "hosts: {h1: 10.0.0.1}\ndefault: h1\n", "hosts.yaml")
    with pytest.raises(load.TopologyError, match=r"x.clab.yml:5: .*special node 'host'"):
        load.load(special, str(hosts))


def test_examples_match_the_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    v = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
    for name in ("leafspine.yaml", "two-hosts.yaml"):
        doc = yaml.safe_load((EXAMPLES / name).read_text())
        assert not list(v.iter_errors(doc)), name
        load.load(EXAMPLES / name)
    bad = yaml.safe_load(GOOD.replace("a: {host: h1}", "a: {hots: h1}"))
    assert list(v.iter_errors(bad))


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz")
def test_graph_parses_with_dot() -> None:
    for name in ("leafspine.yaml", "two-hosts.yaml"):
        text = graph.dot(load.load(EXAMPLES / name))
        r = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "<svg" in r.stdout, r.stderr


def test_hypervisor_snippets_use_the_endpoints_ports(tmp_path: Path) -> None:
    t = load.load(write(tmp_path, GOOD))
    args = hypervisor.qemu_args(t, "vm")
    assert args[1].startswith("dgram,id=eth0,local.type=inet,local.host=127.0.0.1,local.port=20001,")
    assert "remote.port=20000" in args[1] and "local.port=20003" in args[5]
    xml = hypervisor.libvirt_xml(t, "vm")
    assert "<source address='127.0.0.1' port='20000'>" in xml and "port='20003'" in xml
    with pytest.raises(Exception, match="only libvirt and qemu"):
        hypervisor.qemu_args(t, "a")


def test_link_control_goes_to_the_port_of_the_end_it_goes_towards(tmp_path: Path) -> None:
    t = load.load(write(tmp_path, GOOD))
    seg = t.segments[0]
    vid = str(ids.segment_id(t, seg))
    a_port = ids.port_name("demo", Endpoint("a", "eth1"))
    b_port = ids.port_name("demo", Endpoint("b", "eth1"))
    assert str(apply.part(t, "h1").vnets[vid][1].link(a_port)) == "loss 1"
    assert str(apply.part(t, "h2").vnets[vid][1].link(b_port)) == "loss 1, delay 5"
    e = error(tmp_path, GOOD.replace("    loss: 1", "    rate: fast"))
    assert (e.line, e.key) == (12, "links[0].rate") and "not a rate" in e.problem
    e = error(tmp_path, GOOD.replace("    loss: 1", "    delay: 100000"))
    assert e.key == "links[0]" and "delay" in e.problem and "out of range" in e.problem
    e = error(tmp_path, GOOD.replace("    loss: 1", "    suspended: maybe"))
    assert e.key == "links[0].suspended"


def test_link_set_finds_links_by_an_end_or_a_lan_name(tmp_path: Path) -> None:
    from vnet.topo import linkset
    t = load.load(write(tmp_path, GOOD))
    assert linkset.find_segment(t, "b:eth1") is t.segments[0]
    assert linkset.find_segment(t, "mgmt") is t.segments[3]
    with pytest.raises(Exception, match="no link or LAN has the end a:eth9"):
        linkset.find_segment(t, "a:eth9")
    with pytest.raises(Exception, match="no LAN 'wan'"):
        linkset.find_segment(t, "wan")


def test_show_json_matches_its_schema() -> None:
    """`vn topo show --json` (doc/schema/topo-show.json), as a host of the file and as
    none of its hosts, for the example with link control and a LAN."""
    t = load.load(EXAMPLES / "leafspine.yaml")
    host = next(iter(t.hosts))
    for me in (host, None):
        view = show.status(t, me, [], [], [])
        check("topo-show", {"name": t.name, "host": me, "segments": view})
    assert any(seg["control"] for seg in view), "the example sets no link control: the schema's part is untested"
