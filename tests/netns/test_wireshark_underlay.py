"""The Wireshark dissector (contrib/wireshark/vnet.lua) on a real underlay.  Needs root.

One lab of two hosts carries ping on a plain UDP vnet, a raw EtherIP vnet, a `conf`
vnet and an `auth` raw EtherIP vnet, with the first host forwarding its floods to the
second as a peer (VFWD); the switch between them is captured from before the VMs
start (their gratuitous VARP announces), written to a pcap, and read by tshark with
the dissector: tshark, not our parser, says what is on the wire.
"""
from __future__ import annotations

import pytest
from conftest import needs_root

from lab import wireshark
from lab.capture import Capture
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

FIELDS = ("vnet.msg", "vnet.id", "vnet.varp.op", "vnet.varp.mac", "vnet.varp.addr", "vnet.varp.super",
          "vnet.seal.level", "vnet.seal.keyid", "vnet.seal.sender", "vnet.seal.session", "vnet.seal.counter",
          "vnet.vfwd.src", "vnet.vfwd.dst", "ip.src", "icmp.type", "frame.protocols")

#: vnet -> (vn vnet-create options, VM subnet)
VNETS = {"97": ((), "10.97.0"), "98": (("-e", "etherip"), "10.98.0"),
         "99": (("-s", "conf"), "10.99.0"), "9a": (("-s", "auth", "-e", "etherip"), "10.154.0")}


def mac(vnet: str, i: int) -> str:
    return f"aa:00:00:00:{vnet}:0{i}"


def test_tshark_decodes_every_message_of_a_live_underlay(lab, make_hosts, tmp_path):
    assert wireshark.tshark(), "tshark is not installed (setup.sh installs it)"
    hosts = make_hosts(2)
    key = tmp_path / "key"
    hosts[0].vn("key-gen", str(key))
    for vnet, (opts, _) in VNETS.items():
        for h in hosts:
            h.vn("vnet-create", *opts, *(("-k", str(key)) if "-s" in opts else ()), vnet)
    hosts[0].vn("peer-add", hosts[1].ip)
    ids = {VnetId.parse(v).packed: v for v in VNETS}
    with Capture(lab, lab.nodes["sw"]) as cap:
        pairs = {}
        for vnet, (_, net) in VNETS.items():
            pairs[vnet] = [lab.vm(f"v{vnet}{i}", hosts[i - 1].host, f"vnet{vnet}", f"{net}.{i}/24",
                                  mac=mac(vnet, i)) for i in (1, 2)]
        for a, b in pairs.values():
            lab.wait_ping(a, b.ip)
            r = lab.ping(a, b.ip, count=2)
            assert r.received == 2, r.output

        def each_vnet_seen(frames: list[bytes]) -> bool:
            seen = {v: 0 for v in VNETS}
            for f in frames:
                for vid, v in ids.items():
                    seen[v] += vid in f
            return min(seen.values()) >= 6

        frames = cap.wait_for(each_vnet_seen, "six packets of every vnet")
    pcap = wireshark.write_pcap(tmp_path / "underlay.pcap", frames)
    rows = wireshark.fields(pcap, FIELDS, display_filter="vnet")
    by_vnet: dict[str, list[dict[str, str]]] = {v: [] for v in VNETS}
    for r in rows:  # a sealed VARP message names its vnet twice: header and body
        if r["vnet.id"].split(",")[0] in by_vnet:
            by_vnet[r["vnet.id"].split(",")[0]].append(r)
    h1, h2 = hosts[0].ip, hosts[1].ip

    # Plain UDP vnet: VUDP frames with the pings decoded inside, VFWD copies of the
    # first host's floods to its peer, and the plain gratuitous VARP announces.
    plain = by_vnet["97"]
    vudp_icmp = {r["icmp.type"] for r in plain if r["vnet.msg"] == "2"}
    assert {"8", "0"} <= vudp_icmp, plain
    assert any(r["vnet.msg"] == "3,2" and r["vnet.vfwd.src"] == "0.0.0.0" and r["vnet.vfwd.dst"] == "224.10.0.1"
               and r["ip.src"].startswith(h1) for r in plain), plain
    announces = {(r["vnet.varp.mac"], r["vnet.varp.addr"], r["vnet.varp.super"])
                 for r in plain if r["vnet.msg"] == "1" and r["vnet.varp.op"] == "2"}
    assert {(mac("97", 1), h1, "1"), (mac("97", 2), h2, "1")} <= announces, plain

    # Raw EtherIP: frames in our 18-byte header with the inner ICMP decoded (VARP
    # stays on UDP), and the floods' VFWD copies carry protocol 97 inside.
    raw = by_vnet["98"]
    frames_raw = [r for r in raw if r["vnet.msg"] == ""]
    assert all(r["frame.protocols"].startswith("eth:ethertype:ip:vnet_etherip:eth:") for r in frames_raw), raw
    assert {"8", "0"} <= {r["icmp.type"] for r in frames_raw}, raw
    assert any(r["vnet.msg"] == "3" and "udp:vnet:ip:vnet_etherip:eth:" in r["frame.protocols"] for r in raw), raw

    # Sealed: level, key id, sender, one session per sender and a fresh counter per
    # message of a sender;
    # the auth body is decoded (ICMP inside raw EtherIP), the conf body is not.
    for vnet, level, icmp in (("99", "2", set()), ("9a", "1", {"8", "0"})):
        sealed = by_vnet[vnet]
        assert sealed and all(r["vnet.seal.level"] == level and r["vnet.seal.keyid"] == "1" for r in sealed), sealed
        assert {r["vnet.seal.sender"] for r in sealed if r["vnet.msg"] in ("5", "")} == {h1, h2}, sealed
        assert {r["icmp.type"] for r in sealed} - {""} == icmp, sealed
        for sender in (h1, h2):
            # A sealed flood's VFWD copy to the peer is the same message: left out.
            mine = [(r["vnet.seal.session"], int(r["vnet.seal.counter"])) for r in sealed
                    if r["vnet.seal.sender"] == sender and r["vnet.msg"] in ("5", "")]
            assert len(set(mine)) == len(mine) and min(c for _, c in mine) >= 1, mine  # never reused
            assert len({s for s, _ in mine}) == 1 and len(mine[0][0]) == 32, mine  # one random session a start
    # The auth vnet's announces are sealed VARP messages whose body is shown.
    assert any(r["vnet.varp.mac"] == mac("9a", 1) and r["vnet.seal.sender"] == h1 for r in by_vnet["9a"])
