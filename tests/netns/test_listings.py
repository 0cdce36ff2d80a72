"""Every listing of `vn` on a running datapath: its --json against its schema
(doc/schema/), its brief lines (`vn -br`, `-s`, $VNET_FORMAT), and the SXP default kept.
Written for both datapaths: tests/kernel/in_guest runs it with the module."""
from __future__ import annotations

import pytest
from conftest import needs_root
from json_contract import check

from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

ID97, ID96 = str(VnetId.parse("97")), str(VnetId.parse("96"))
VIF = "aa:00:00:00:00:42"


def two_hosts_with_traffic(lab, make_hosts, tmp_path):
    """Two hosts, each with vnet 97 and a secure raw-EtherIP vnet 96, a VM on 97 on each
    side that has pinged the other, a peer and a declared vif on host 0."""
    hosts = make_hosts(2)
    key = tmp_path / "96.key"
    hosts[0].vn("key-gen", str(key))
    for h in hosts:
        h.vn("vnet-create", "97")
        h.vn("vnet-create", "-s", "conf", "-e", "etherip", "-k", str(key), "96")
    hosts[0].vn("peer-add", hosts[1].ip)
    hosts[0].vn("vif-add", "97", VIF)
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip, timeout=20)
    return hosts, key, a, b


def test_every_listing_matches_its_schema(lab, make_hosts, tmp_path):
    hosts, key, a, b = two_hosts_with_traffic(lab, make_hosts, tmp_path)
    h = hosts[0]
    v96, v97 = check("vnets", h.vn_json("vnets"))
    assert (v96["id"], v96["keys"], v96["header"]) == (ID96, [1], 100)
    assert (v97["id"], v97["keys"], v97["header"]) == (ID97, [], 64)
    assert v97["tx_packets"] > 0 and "device" not in v97 and "vifs" not in v97
    # -l nests each vnet's device; its bridge's other ports are a list even with one.
    v96, v97 = check("vnets", h.vn_json("vnets", "-l"))
    assert v97["device"]["name"] == "vnif97" and v97["device"]["bridge"] == "vnet97"
    assert v97["device"]["interfaces"] == [a.link.intf2.name] and v96["device"]["interfaces"] == []
    # -a nests each listed vnet's vifs and VARP entries.
    (v97,) = check("vnets", h.vn_json("vnets", "-l", "-a", "97"))
    assert VIF in {e["vmac"] for e in v97["vifs"]}
    assert {e["vmac"]: e["addr"] for e in v97["varp"]}[b.mac] == hosts[1].ip
    check("vnets", h.vn_json("vnets", "-a"))
    assert check("vnets", h.vn_json("vnets", "vnet-that-is-not-here")) == []

    cfgs = check("vnet-list", h.vn_json("vnet-list"))
    assert [(c["id"], c["key_files"]) for c in cfgs] == [(ID96, [str(key)]), (ID97, [])]
    check("vnet-list", h.vn_json("vnet-list", "97"))
    vifs = check("vifs", h.vn_json("vifs"))
    assert {"vnet": ID97, "vmac": VIF} in [{k: e[k] for k in ("vnet", "vmac")} for e in vifs["entries"]]
    varp = check("varp", h.vn_json("varp"))
    assert varp["ucast_addr"] == h.ip and {e["vmac"]: e["addr"] for e in varp["entries"]}[b.mac] == hosts[1].ip
    (peer,) = check("peers", h.vn_json("peers"))
    assert (peer["addr"], peer["port"]) == (hosts[1].ip, 1798)
    assert check("peers", hosts[1].vn_json("peers")) == []
    bridges = {b["bridge"]: b for b in check("bridges", h.vn_json("bridges"))}
    assert set(bridges["vnet97"]["interfaces"]) == {"vnif97", a.link.intf2.name}
    long_bridges = {b["bridge"]: b for b in check("bridges", h.vn_json("bridges", "-l"))}
    assert long_bridges["vnet96"]["device"]["name"] == "vnet96"
    stats = check("stats", h.vn_json("stats"))
    assert stats["counters"]["floods"] > 0 and h.counters()["floods"] >= stats["counters"]["floods"]
    # The key commands print the keys held after the change.
    other = tmp_path / "96-2.key"
    h.vn("key-gen", "--id", "2", str(other))
    held = check("keys", h.vn_json("key-add", "96", str(other)))
    assert (held["send"], held["keys"], held["key_files"]) == (1, [1, 2], [str(key), str(other)])
    assert check("keys", h.vn_json("key-use", "96", "1"))["keys"] == [1, 2]
    assert check("keys", h.vn_json("key-del", "96", "2"))["keys"] == [1]


def test_brief_listings_read_like_ip_br(lab, make_hosts, tmp_path):
    hosts, key, a, b = two_hosts_with_traffic(lab, make_hosts, tmp_path)
    h = hosts[0]
    lines = h.vn("-br", "vnets").stdout.splitlines()
    assert [line.split() for line in lines] == [["96", "vnif96", "vnet96", "etherip", "conf", "keys", "1"],
                                                ["97", "vnif97", "vnet97", "udp", "none"]]
    assert len({line.index("vnif") for line in lines}) == 1 and len({line.index("vnet9") for line in lines}) == 1
    # -s adds the counters, labelled with their JSON names and aligned.
    listed = {v["id"]: v for v in h.vn_json("vnets")}
    with_stats = h.vn("-br", "-s", "vnets").stdout.splitlines()
    for line, vid in zip(with_stats, (ID96, ID97)):
        words = line.split()
        counts = {name: int(words[words.index(name) + 1]) for name in ("rx_packets", "tx_packets", "rx_bytes",
                                                                        "tx_bytes")}
        assert all(counts[n] >= listed[vid][n] for n in counts), (line, listed[vid])
    assert len({line.index("rx_packets") for line in with_stats}) == 1
    # -l the device state, MTU and the other ports; -a the vifs and VARP entries, indented.
    out = h.vn("-br", "vnets", "-l", "-a", "97").stdout.splitlines()
    assert out[0].split()[:5] == ["97", "vnif97", "vnet97", "udp", "none"]
    assert "mtu 1500" in out[0] and out[0].endswith(f"ports {a.link.intf2.name}"), out
    assert any(line.startswith(f"    vif   {VIF}  local") for line in out), out
    assert any(line.startswith("    varp") and b.mac in line and hosts[1].ip in line for line in out), out

    assert [line.split()[:2] for line in h.vn("-br", "vifs").stdout.splitlines()
            if VIF in line] == [["97", VIF]]
    varp = [line.split() for line in h.vn("-br", "varp").stdout.splitlines()]
    assert ["97", b.mac, hosts[1].ip] in [w[:3] for w in varp], varp
    assert h.vn("-br", "peers").stdout == f"{hosts[1].ip}:1798\n"
    assert h.vn("-br", "-s", "peers").stdout.split()[:2] == [f"{hosts[1].ip}:1798", "tx_packets"]
    bridges = {line.split()[0]: line.split() for line in h.vn("-br", "bridges").stdout.splitlines()}
    assert set(bridges["vnet97"][-1].split(",")) == {"vnif97", a.link.intf2.name}
    stats = h.vn("-br", "stats").stdout.splitlines()
    assert stats and all(line.split()[0] in ("counter", "drop") and line.split()[2].isdigit() for line in stats)
    assert h.vn("-br", "vnet-list").stdout.split("\n")[0].split() == ["96", "vnif96", "vnet96", "etherip", "conf",
                                                                      str(key)]
    # Empty listings print nothing and succeed.
    r = hosts[1].vn("-br", "peers")
    assert (r.returncode, r.stdout) == (0, "")


def test_brief_as_default_and_sxp_kept(lab, make_hosts, tmp_path):
    hosts, key, a, b = two_hosts_with_traffic(lab, make_hosts, tmp_path)
    h = hosts[0]
    brief = {"VNET_FORMAT": "brief"}
    assert h.vn("vnets", env=brief).stdout == h.vn("-br", "vnets").stdout
    assert h.vn("vnet-list", env=brief).stdout == h.vn("-br", "vnet-list").stdout
    # --sxp (and --json) win over the variable; SXP stays the default without it.
    sxp = h.vn("vnet-list", "-l").stdout
    assert h.vn("--sxp", "vnet-list", "-l", env=brief).stdout == sxp
    assert sxp.startswith("(vnet\n    (id 0000:0000:0000:0000:0000:0000:0000:0096)\n")
    assert [v["id"] for v in h.vn_json("vnets")] == [ID96, ID97]
    assert h.vn("vnets", "--json", env=brief).stdout.startswith("[\n  {\n")
    # The original layout: 12 lines per vnet (laid out for width 50), then a blank line.
    lines = h.vn("vnets", "97").stdout.split("\n")
    assert lines[:7] == ["(vnet", f"    (id {ID97})", "    (vnetif vnif97)", "    (security none)", "    (header 64)",
                         "    (bridge vnet97)", "    (encapsulation udp)"], lines
    assert [line.split()[0] for line in lines[7:11]] == ["(rx_packets", "(tx_packets", "(rx_bytes", "(tx_bytes"]
    assert lines[11:] == [")", "", ""], lines
    assert h.vn("vnets", env={"VNET_FORMAT": "sxp"}).stdout.count("(vnet\n") == 2
    r = h.vn("vnets", env={"VNET_FORMAT": "xml"}, check=False)
    assert r.returncode == 1 and r.stderr == "vn: VNET_FORMAT=xml: expected one of sxp, brief\n", r.stderr
