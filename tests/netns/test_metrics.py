"""The Prometheus page (doc/metrics.md): `vn stats --prometheus` and `vnetd --metrics`
read by prometheus_client's own parser, value for value equal to the listings.  Needs root.

test_prometheus_page_equals_the_listings runs on both datapaths (imported by
tests/kernel/in_guest/test_kmod_scenarios.py); the HTTP endpoint is vnetd's alone.
"""
from __future__ import annotations

import subprocess
import time

import pytest
from conftest import needs_root
from prometheus_client.parser import text_string_to_metric_families

from lab.traffic import send_datagrams
from lab.procs import script_argv
from vnet.model.vnetid import VnetId
from vnet.wire import stats

pytestmark = [needs_root, pytest.mark.root]

FETCH = r"""
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
    sys.stdout.write(r.headers["Content-Type"] + "\n" + r.read().decode())
"""


def samples(page: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a page, as Prometheus reads it; every
    family has HELP and TYPE."""
    out = {}
    for fam in text_string_to_metric_families(page):
        assert fam.documentation and fam.type in ("counter", "gauge"), fam
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def expected(host) -> dict[tuple[str, tuple], float]:
    """What the page must say, from the JSON listings of `vn`."""
    listed = host.vn_json("stats")
    want = {(f"vnet_{c.replace('-', '_')}_total", ()): listed["counters"].get(c, 0) for c in stats.COUNTERS}
    want.update({("vnet_drops_total", (("reason", r),)): listed["drops"].get(r, 0) for r in stats.DROPS})
    vnets = host.vn_json("vnets", "-a")  # with each vnet's vifs and VARP entries
    want[("vnet_vnets", ())] = len(vnets)
    ports = host.vn_json("ports")
    for v in vnets:
        label = (("vnet", VnetId.parse(v["id"]).short),)
        for field in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
            want[(f"vnet_{field}_total", label)] = v[field]
        want[("vnet_vifs", label)] = len(v["vifs"])
        want[("vnet_varp_entries", label)] = len(v["varp"])
        want[("vnet_ports", label)] = sum(p["vnet"] == v["id"] for p in ports)
    peers = host.vn_json("peers")
    want[("vnet_peers", ())] = len(peers)
    for p in peers:
        for field in ("tx_packets", "rx_packets"):
            want[(f"vnet_peer_{field}_total", (("peer", p["addr"]),))] = p[field]
    return want


def agree(host, read_page) -> tuple[dict, dict]:
    """(what the page says, what the listings say) of every value the listings give,
    read again until they agree: a late packet counted between the two reads must not
    fail the test, a page that never matches must."""
    deadline = time.monotonic() + 60
    while True:
        page = samples(read_page())
        want = expected(host)
        got = {k: page.get(k) for k in want}
        if got == want or time.monotonic() > deadline:
            return got, want
        time.sleep(0.2)


def lan(lab, hosts) -> None:
    """Vnet 97 with a VM on each host, a peer, a ping and a few malformed packets, so
    counters, drops and every table have something in them."""
    for h in hosts:
        h.vn("vnet-create", "97")
    hosts[0].vn("peer-add", hosts[1].ip)
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    before = hosts[0].counters()
    send_datagrams(lab, hosts[1].host, hosts[0].ip, [b"\x00", b"\x00\x09\x00\x00"])
    hosts[0].wait_counters(before, {"drop:short": 1, "drop:bad-message-id": 1})


def test_prometheus_page_equals_the_listings(lab, make_hosts):
    hosts = make_hosts(2)
    lan(lab, hosts)
    h = hosts[0]
    got, want = agree(h, lambda: h.vn("stats", "--prometheus").stdout)
    assert got == want
    assert want[("vnet_drops_total", (("reason", "short"),))] >= 1
    assert want[("vnet_vifs", (("vnet", "97"),))] == 1 and want[("vnet_varp_entries", (("vnet", "97"),))] >= 1
    assert want[("vnet_rx_packets_total", (("vnet", "97"),))] > 0
    r = h.vn("stats", "--prometheus", "--json", check=False)
    assert r.returncode == 2 and "--json and --prometheus" in r.stderr, r.stderr


def test_vnetd_serves_metrics_and_refuses_an_address_in_use(lab, make_hosts):
    hosts = make_hosts(2, start=False, datapath="vnetd")
    address = f"{hosts[0].ip}:9798"
    hosts[0].start("--metrics", address)
    hosts[1].start()
    lan(lab, hosts)

    def scrape() -> str:
        r = lab.run(hosts[1].host, script_argv(FETCH, f"http://{address}/metrics"), timeout=60)
        assert r.returncode == 0, r.stderr
        content_type, _, page = r.stdout.partition("\n")
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        return page

    got, want = agree(hosts[0], scrape)
    assert got == want
    r = lab.run(hosts[1].host, script_argv(FETCH, f"http://{address}/other"), timeout=60)
    assert r.returncode != 0 and "404" in r.stderr

    # A third host whose metrics address is taken does not start, and says which.
    (third,) = make_hosts(1, first=3, start=False, switch=lab.nodes["sw"], datapath="vnetd")
    hold = ("import socket, sys; s = socket.socket(); s.bind(('0.0.0.0', 9798)); "
            "s.listen(); print('ready', flush=True); sys.stdin.read()")
    holder = lab.popen(third.host, script_argv(hold),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    with pytest.raises(RuntimeError, match=f"cannot serve metrics on {third.ip}:9798: Address already in use"):
        third.start("--metrics", f"{third.ip}:9798")
    holder.kill()
