"""Listings as scripts and people read them (vnet/cli/listing.py): the JSON views of the
records both datapaths build, checked against their schemas (doc/schema/), and the
brief lines made from them.  The records here are built by vnet.control.records, as
vnetd and the module client build theirs."""
from __future__ import annotations

import json

import pytest
from json_contract import LISTINGS, OUTPUTS, SCHEMAS, STREAMS, check, validator
from jsonschema import Draft202012Validator

from vnet.cli import listing
from vnet.control import records
from vnet.errors import VnetError
from vnet.model.config import VnetConfig
from vnet.model.keys import Key
from vnet.model.vnetid import VnetId

V97, V96 = VnetId.parse("97"), VnetId.parse("96")
MAC_A, MAC_B, MAC_C = (bytes.fromhex(h) for h in ("aa0000110011", "aa0000110012", "aa0000110013"))


def vnet_records() -> list:
    return [records.vnet_record(V96, "vnif96", "conf", 100, bridge="vnet96", encapsulation="etherip",
                                rx_packets=3, tx_packets=4, rx_bytes=300, tx_bytes=4000, keys=[2]),
            records.vnet_record(V97, "vnif97", "none", 64, bridge="vnet97", encapsulation="udp",
                                rx_packets=19, tx_packets=18, rx_bytes=1666, tx_bytes=1556)]


#: A device as vnet.host.netdev.link_summary reports it.
LINK = {"mac": "02:00:00:00:00:01", "mtu": 1500, "state": "UP", "rx_packets": 1, "tx_packets": 2,
        "rx_bytes": 30, "tx_bytes": 40, "rx_dropped": 0, "tx_dropped": 0}


def device_record(*ports: str) -> list:
    """The `vnif` record `vn vnets -l` builds (vnet.cli.vn._device_record)."""
    info = {**LINK, "mac": "56:a9:ec:dd:d2:fe", "state": "UNKNOWN"}
    return (["vnif", ["name", "vnif97"]] + [[k, str(v)] for k, v in info.items()]
            + [["bridge", "vnet97"], ["interfaces", *ports]])


def vif_records() -> list:
    return [records.viftable_record(60, 3), records.vif_record(V97.packed, MAC_A, 2.7)]


def varp_records() -> list:
    return [records.varp_record("eth0", "224.10.0.1", "192.0.2.1", 1798, "etherip_in_udp", 60),
            records.ventry_record(V96.packed, MAC_C, "192.0.2.23", 12),
            records.ventry_record(V97.packed, MAC_B, "192.0.2.2", 0.4)]


def stats_records() -> list:
    return [records.counters_record("counters", {"announces-received": 2, "floods": 33}),
            records.counters_record("drops", {"duplicate": 1})]


def peer_records() -> list:
    return [records.peer_record("192.0.2.2", 1798, 5, 0), records.peer_record("203.0.113.7", 1799, 1234, 7)]


def key_records() -> list:
    held = [Key(2, bytes(32), "/etc/vnet/keys/96-2.key"), Key(1, bytes(32), "/var/lib/vnet/keys/96.key")]
    return [records.keys_record(V96, "conf", held)]


def config_records() -> list:
    return [VnetConfig.from_cli("97").to_sxp(),
            VnetConfig.from_cli("96", security="conf", encapsulation="etherip",
                                key_files=("/etc/vnet/keys/96.key",)).to_sxp()]


def ported_config_records() -> list:
    return [VnetConfig.from_cli("98", bridge="none", mtu=9000, ports=("veth-a", "veth-b")).to_sxp(),
            VnetConfig.from_cli("99", ports=("veth-c",),
                                endpoints=("udp 127.0.0.1:5000 127.0.0.1:5001", "tcp-listen 0.0.0.0:5555")).to_sxp()]


def endpoint_records() -> list:
    return [records.endpoint_record(V97, "udp", "127.0.0.1:5000", "127.0.0.1:5001", "connected",
                                    10, 20, 1000, 2000, 3),
            records.endpoint_record(V97, "tcp-connect", "-", "10.0.0.2:6000", "waiting", 0, 0, 0, 0, 0)]


def port_records() -> list:
    return [records.port_record(V97, "veth-a", "attached", 7, 10, 20, 1000, 2000),
            records.port_record(V97, "veth-b", "waiting", 0, 0, 0, 0, 0),
            records.port_record(V97, "veth-c", "attached", 8, 1, 2, 3, 4,
                                [["loss", "10"], ["delay", "50"], ["rate", "10mbit"], ["suspended", "yes"]])]


def all_views() -> dict[str, list]:
    """Every listing's JSON, in each of its shapes (vnets plain, -l and -a)."""
    vnets = vnet_records()
    devices = {str(V97): device_record("veth-a"), str(V96): None}
    return {
        "vnets": [listing.vnets(vnets), listing.vnets(vnets, devices),
                  listing.vnets(vnets, devices, vif_records(), varp_records()), listing.vnets([])],
        "vnet-list": [listing.configs(config_records()), listing.configs(ported_config_records())],
        "vifs": [listing.vif_table(vif_records()), listing.vif_table(vif_records()[:1])],
        "varp": [listing.varp_table(varp_records())],
        "peers": [listing.peers(peer_records()), listing.peers([])],
        "bridges": [listing.bridges({"vnet97": ["vnif97", "veth-a"], "br0": []}),
                    listing.bridges({"vnet97": ["vnif97"], "gone": []}, {"vnet97": LINK, "gone": None})],
        "stats": [listing.stats(stats_records()), listing.stats([records.counters_record("counters", {}),
                                                                 records.counters_record("drops", {})])],
        "keys": [listing.key_set(key_records())],
        "ports": [listing.ports(port_records()), listing.ports([])],
        "endpoints": [listing.endpoints(endpoint_records()), listing.endpoints([])],
    }


# ---- the schemas ---------------------------------------------------------------------

def test_every_listing_has_a_valid_schema() -> None:
    # NAME.schema.json describes a file users write (topology.schema.json), not a listing.
    files = {p.stem for p in SCHEMAS.glob("*.json") if not p.name.endswith(".schema.json")}
    assert files == {*LISTINGS, *STREAMS, *OUTPUTS, "common"}
    for name in files:
        schema = json.loads((SCHEMAS / f"{name}.json").read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", LISTINGS)
def test_views_match_their_schema(name: str) -> None:
    for view in all_views()[name]:
        check(name, json.loads(json.dumps(view)))


def test_schemas_refuse_the_old_shapes() -> None:
    """The shapes that changed with the data (issue 11) no longer pass."""
    vnet = listing.vnets(vnet_records())[0]
    for bad in ({**vnet, "keys": 2}, {**vnet, "type": "vnet"}, {**vnet, "header": "100"},
                {k: v for k, v in vnet.items() if k != "keys"}):
        assert not validator("vnets").is_valid([bad]), bad
    with_device = listing.vnets(vnet_records(), {str(V97): device_record("veth-a")})[1]
    with_device["device"]["interfaces"] = "veth-a"
    assert not validator("vnets").is_valid([with_device])
    assert not validator("stats").is_valid([{"type": "counters", "floods": 33}])
    assert not validator("vnet-list").is_valid([{**listing.configs(config_records())[1],
                                                  "key_files": "/etc/vnet/keys/96.key"}])


# ---- the JSON shape ------------------------------------------------------------------

def test_list_fields_are_lists_whatever_their_length() -> None:
    vnets = listing.vnets(vnet_records(), {str(V97): device_record("veth-a"), str(V96): None})
    assert [v["keys"] for v in vnets] == [[2], []]
    assert vnets[1]["device"]["interfaces"] == ["veth-a"] and vnets[0]["device"] is None
    assert listing.vnets(vnet_records(), {str(V97): device_record()})[1]["device"]["interfaces"] == []
    cfgs = listing.configs(config_records())
    assert [c["key_files"] for c in cfgs] == [[], ["/etc/vnet/keys/96.key"]]
    assert listing.key_set(key_records()) == {
        "id": str(V96), "security": "conf", "send": 2, "keys": [2, 1],
        "key_files": ["/etc/vnet/keys/96-2.key", "/var/lib/vnet/keys/96.key"]}


def test_types_are_declared_not_guessed() -> None:
    rec = records.vnet_record(V97, "1234", "none", 64, bridge="0", encapsulation="udp", rx_packets=0,
                              tx_packets=0, rx_bytes=0, tx_bytes=0)
    (view,) = listing.vnets([rec])
    assert view["vnetif"] == "1234" and view["bridge"] == "0" and view["header"] == 64
    assert listing.vif_table(vif_records())["entries"] == [{"vnet": str(V97), "vmac": "aa:00:00:11:00:11", "age": 2}]


def test_nested_records_are_nested() -> None:
    vnets = listing.vnets(vnet_records(), None, vif_records(), varp_records())
    v96, v97 = vnets
    assert "device" not in v97  # only with -l
    assert [e["vmac"] for e in v97["vifs"]] == ["aa:00:00:11:00:11"] and v96["vifs"] == []
    assert v97["varp"] == [{"addr": "192.0.2.2", "age": 0, "vmac": "aa:00:00:11:00:12", "vnet": str(V97)}]
    assert [e["addr"] for e in v96["varp"]] == ["192.0.2.23"]


def test_counter_names_are_data() -> None:
    assert listing.stats(stats_records()) == {"counters": {"announces-received": 2, "floods": 33},
                                              "drops": {"duplicate": 1}}
    assert listing.stats([]) == {"counters": {}, "drops": {}}
    varp = listing.varp_table(varp_records())
    assert {k for k in varp if k != "entries"} == {"device", "mcast_addr", "ucast_addr", "port", "encapsulation",
                                                   "entry_ttl"}
    assert varp["port"] == 1798 and varp["entry_ttl"] == 60


def test_fast_path_fields_of_a_vnetd_vnet_are_integers_and_valid() -> None:
    """vnetd's fast path adds which path a vnet takes and the packets it carried."""
    fast = records.vnet_record(V97, "vnif97", "none", 64, bridge="vnet97", encapsulation="udp",
                               rx_packets=19, tx_packets=18, rx_bytes=1666, tx_bytes=1556, path="fast",
                               fast_rx_packets=17, fast_tx_packets=16, fast_rx_bytes=1470, fast_tx_bytes=1372)
    slow = records.vnet_record(V96, "vnif96", "conf", 100, bridge="vnet96", encapsulation="udp",
                               rx_packets=3, tx_packets=4, rx_bytes=300, tx_bytes=4000, keys=[2], path="slow",
                               path_reason="secure vnet", fast_rx_packets=0, fast_tx_packets=0,
                               fast_rx_bytes=0, fast_tx_bytes=0)
    view = listing.vnets([slow, fast])
    check("vnets", view)
    assert view[1]["path"] == "fast" and view[1]["fast_tx_packets"] == 16
    assert view[0]["path_reason"] == "secure vnet"
    lines = listing.brief_vnets(view, True)
    assert lines[1].endswith("tx_bytes 1556  fast  fast_rx 17  fast_tx 16"), lines
    assert lines[0].endswith("slow  fast_rx  0  fast_tx  0"), lines
    assert "fast" not in listing.brief_vnets(view, False)[1]


# ---- brief lines ---------------------------------------------------------------------

def test_brief_vnets_one_aligned_line_each_with_short_ids() -> None:
    lines = listing.brief_vnets(listing.vnets(vnet_records()), False)
    assert lines == ["96  vnif96  vnet96  etherip  conf  keys 2",
                     "97  vnif97  vnet97  udp      none"]
    stats_lines = listing.brief_vnets(listing.vnets(vnet_records()), True)
    assert stats_lines[0].endswith("rx_packets  3  tx_packets  4  rx_bytes  300  tx_bytes 4000")
    assert stats_lines[1].endswith("rx_packets 19  tx_packets 18  rx_bytes 1666  tx_bytes 1556")
    assert stats_lines[0].index("rx_packets") == stats_lines[1].index("rx_packets")
    long_id = VnetId.parse("1:0:0:0:0:0:0:97")
    rec = records.vnet_record(long_id, "vnif97", "none", 64, bridge="vnet97", encapsulation="udp",
                              rx_packets=0, tx_packets=0, rx_bytes=0, tx_bytes=0)
    assert listing.brief_vnets(listing.vnets([rec]), False)[0].startswith(str(long_id) + "  vnif97")


def test_brief_vnets_long_and_all() -> None:
    devices = {str(V97): device_record("veth-a", "veth-b"), str(V96): None}
    lines = listing.brief_vnets(listing.vnets(vnet_records(), devices, vif_records(), varp_records()), False)
    assert lines == [
        "96  vnif96  vnet96  etherip  conf  keys 2  -",
        "    varp  aa:00:00:11:00:13  192.0.2.23  age 12",
        "97  vnif97  vnet97  udp      none          UNKNOWN  mtu 1500  ports veth-a,veth-b",
        "    vif   aa:00:00:11:00:11  local       age  2",
        "    varp  aa:00:00:11:00:12  192.0.2.2   age  0",
    ]


def test_brief_other_listings() -> None:
    assert listing.brief_vifs(listing.vif_table(vif_records())) == ["97  aa:00:00:11:00:11  age 2"]
    assert listing.brief_varp(listing.varp_table(varp_records())) == [
        "96  aa:00:00:11:00:13  192.0.2.23  age 12",
        "97  aa:00:00:11:00:12  192.0.2.2   age  0"]
    assert listing.brief_peers(listing.peers(peer_records()), False) == ["192.0.2.2:1798", "203.0.113.7:1799"]
    assert listing.brief_peers(listing.peers(peer_records()), True) == [
        "192.0.2.2:1798    tx_packets    5  rx_packets 0",
        "203.0.113.7:1799  tx_packets 1234  rx_packets 7"]
    assert listing.brief_stats(listing.stats(stats_records())) == [
        "counter  announces-received   2",
        "counter  floods              33",
        "drop     duplicate            1"]
    assert listing.brief_configs(listing.configs(config_records())) == [
        "97  vnif97  vnet97  udp      none",
        "96  vnif96  vnet96  etherip  conf  /etc/vnet/keys/96.key"]
    assert listing.brief_keys(listing.key_set(key_records())) == [
        "key 2  send  /etc/vnet/keys/96-2.key",
        "key 1        /var/lib/vnet/keys/96.key"]
    bridges = listing.bridges({"vnet97": ["vnif97", "veth-a"], "br0": []}, {"vnet97": LINK, "br0": None})
    assert listing.brief_bridges(bridges, False) == ["br0     -", "vnet97  UP  vnif97,veth-a"]
    assert listing.brief_bridges(bridges, False, long=True)[1] == \
        "vnet97  UP  02:00:00:00:00:01  mtu 1500  vnif97,veth-a"
    assert "rx_dropped 0  tx_dropped 0  vnif97,veth-a" in listing.brief_bridges(bridges, True)[1]


def test_empty_listings_print_nothing() -> None:
    assert listing.brief_vnets([], True) == []
    assert listing.brief_vifs(listing.vif_table(vif_records()[:1])) == []
    assert listing.brief_varp(listing.varp_table(varp_records()[:1])) == []
    assert listing.brief_peers([], True) == []
    assert listing.brief_stats(listing.stats([])) == []
    assert listing.table([]) == []


def test_table_aligns_text_left_numbers_right_and_labels_apart() -> None:
    assert listing.table([["a", 1, ("age", 5)], ["bbb", 100, ("age", 12)]]) == [
        "a      1  age  5",
        "bbb  100  age 12"]
    assert listing.table([["x", ""], ["y", "z"]], indent="  ") == ["  x", "  y  z"]
    assert listing.table([["a", "", "b"], ["c", "", "d"]]) == ["a  b", "c  d"]  # no room for an empty column


# ---- the format ----------------------------------------------------------------------

def test_format_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(listing.FORMAT_ENV, raising=False)
    assert listing.resolve_format(None) == "sxp"
    monkeypatch.setenv(listing.FORMAT_ENV, "brief")
    assert listing.resolve_format(None) == "brief"
    assert listing.resolve_format("sxp") == "sxp"
    monkeypatch.setenv(listing.FORMAT_ENV, "json")
    with pytest.raises(VnetError, match="VNET_FORMAT=json: expected one of sxp, brief"):
        listing.resolve_format(None)


def test_vnet_list_views_give_mtu_and_ports() -> None:
    """mtu is always there (a record leaves out a default one), ports always a list."""
    views = listing.configs(config_records() + ported_config_records())
    assert [(v["mtu"], v["ports"], v["bridge"]) for v in views] == [
        (1500, [], "vnet97"), (1400, [], "vnet96"), (9000, ["veth-a", "veth-b"], "none"),
        (1500, ["veth-c"], "vnet99")]
    assert [v["endpoints"] for v in views] == [
        [], [], [], ["udp 127.0.0.1:5000 127.0.0.1:5001", "tcp-listen 0.0.0.0:5555"]]


def test_brief_endpoints() -> None:
    views = listing.endpoints(endpoint_records())
    assert views[0] == {"vnet": str(V97), "kind": "udp", "local": "127.0.0.1:5000", "remote": "127.0.0.1:5001",
                        "state": "connected", "rx_packets": 10, "tx_packets": 20, "rx_bytes": 1000,
                        "tx_bytes": 2000, "drops": 3}
    assert listing.brief_endpoints(views, False) == [
        "97  udp          127.0.0.1:5000  127.0.0.1:5001  connected",
        "97  tcp-connect  -               10.0.0.2:6000   waiting"]
    assert listing.brief_endpoints(views, True)[0].split()[5:] == [
        "rx_packets", "10", "tx_packets", "20", "rx_bytes", "1000", "tx_bytes", "2000", "drops", "3"]


def test_brief_ports() -> None:
    views = listing.ports(port_records())
    assert views[0] == {"vnet": str(V97), "ifname": "veth-a", "state": "attached", "ifindex": 7,
                        "rx_packets": 10, "tx_packets": 20, "rx_bytes": 1000, "tx_bytes": 2000,
                        "link": {"suspended": False}}
    assert views[2]["link"] == {"loss": 10, "delay": 50, "rate": 10_000_000, "suspended": True}
    assert listing.brief_ports(views, False) == [
        "97  veth-a  attached", "97  veth-b  waiting",
        "97  veth-c  attached  suspended, loss 10%, delay 50ms, rate 10mbit"]
    assert listing.brief_ports(views, True)[0].split() == [
        "97", "veth-a", "attached", "rx_packets", "10", "tx_packets", "20", "rx_bytes", "1000",
        "tx_bytes", "2000"]
    # The counters line up below a port with link control and one without.
    lines = listing.brief_ports(views, True)
    assert lines[0].index("rx_packets") == lines[2].index("rx_packets")
