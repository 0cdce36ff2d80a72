"""The Prometheus exposition (vnet/control/metrics.py) as prometheus_client's parser
reads it: names, escaping, HELP and TYPE.  The values against real listings are
checked in tests/netns/test_metrics.py."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from vnet.control import metrics


def test_labels_and_help_survive_the_parser():
    page = metrics.Page()
    odd = 'a "quoted" back\\slash\nand newline'
    page.family("vnet_port_rx_packets_total", "counter", "help with \\ and\nnewline",
                [({"vnet": "97", "port": odd}, 5), ({"vnet": "0000:0000:0000:0000:0000:0000:0001:0097",
                                                    "port": "eth1"}, 0)])
    page.family("vnet_peers", "gauge", "peers", [({}, 2)])
    page.family("vnet_ports", "gauge", "announced even with no sample", [])
    fams = {f.name: f for f in text_string_to_metric_families(page.text())}
    port = fams["vnet_port_rx_packets"]
    assert port.type == "counter" and port.documentation == "help with \\ and\nnewline"
    assert [(s.name, s.labels, s.value) for s in port.samples] == [
        ("vnet_port_rx_packets_total", {"vnet": "97", "port": odd}, 5),
        ("vnet_port_rx_packets_total", {"vnet": "0000:0000:0000:0000:0000:0000:0001:0097", "port": "eth1"}, 0)]
    assert fams["vnet_peers"].type == "gauge" and fams["vnet_peers"].samples[0].value == 2
    assert fams["vnet_ports"].samples == []


def test_names_follow_prometheus_conventions():
    assert metrics.metric_name("unknown-unicast-floods") == "vnet_unknown_unicast_floods"
    assert metrics.vnet_label("0000:0000:0000:0000:0000:0000:0000:0097") == "97"
    long_id = "0000:0000:0000:0000:0000:0000:0001:0097"
    assert metrics.vnet_label(long_id) == long_id
