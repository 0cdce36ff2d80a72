"""Data integrity through vnetd: TCP super-frames, finished checksums, mixed offload hosts."""
from __future__ import annotations

import pytest
from conftest import needs_root

from lab.traffic import transfer

pytestmark = [needs_root, pytest.mark.root]


@pytest.mark.parametrize("offload", [("--offload", "--offload"), ("--offload", "--no-offload"),
                                     ("--no-offload", "--offload")])
def test_tcp_and_udp_arrive_intact(lab, make_hosts, offload):
    hosts = make_hosts(2, start=False)
    for h, opt in zip(hosts, offload):
        h.start(opt)
        h.vn("vnet-create", "97")
    a = lab.vm("a", hosts[0].host, "vnet97", "10.97.0.1/24")
    b = lab.vm("b", hosts[1].host, "vnet97", "10.97.0.2/24")
    lab.wait_ping(a, b.ip)
    transfer(lab, a, b, "tcp", 30 << 20)   # super-frames (when offloading) both ways: data and ACKs
    transfer(lab, b, a, "tcp", 10 << 20)
    transfer(lab, a, b, "udp", 300)        # small frames whose checksums vnetd finishes
    sizes = {h.ip: h.vn_json("vnets")[0] for h in hosts}
    sender = sizes[hosts[0].ip]
    if offload[0] == "--offload":
        assert sender["tx_bytes"] / sender["tx_packets"] > 1514, "no super-frames were sent"
    else:
        assert sender["tx_bytes"] / sender["tx_packets"] <= 1514
