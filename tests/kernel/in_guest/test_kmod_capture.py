"""`vn capture` with the kernel module as every host's datapath: the points of a
module host (its vnet device as the tunnel, bridge members, ports), counted and read
by tshark as on vnetd (tests/netns/test_capture.py).  The rest of that test (pipes,
filters, the underlay) is `vn capture`'s own, the same whatever the datapath, and runs
on the host only: every tshark and Python start costs seconds in this guest."""
from __future__ import annotations

from netns.test_capture import every_point_read_by_tshark


def test_vn_capture_on_every_point_of_module_hosts(lab, make_hosts, tmp_path):
    every_point_read_by_tshark(lab, make_hosts, tmp_path)
