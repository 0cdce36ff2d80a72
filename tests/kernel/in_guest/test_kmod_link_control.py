"""Link control on a module host (doc/ports.md, "Link control"): `vn port-set` gives the
port's interface tc's netem and a clsact drop (vnet.host.tc), the module's datapath
itself is unchanged.  One short test (CI minutes): suspend and resume, delay, loss,
and removal leaving the interface's tc as it was.  The vnetd side, with the longer
measurements, is tests/netns/test_link_control.py."""
from __future__ import annotations

import json
import statistics

from netns.test_link_control import link, pings, wait_port


def tc_state(lab, vh, ifname: str) -> tuple[list[str], list[int]]:
    """The kinds of the interface's qdiscs and the preferences of its ingress filters."""
    qdiscs = json.loads(lab.run(vh.host, ["tc", "-j", "qdisc", "show", "dev", ifname], check=True).stdout or "[]")
    filters = json.loads(lab.run(vh.host, ["tc", "-j", "filter", "show", "dev", ifname, "ingress"],
                                 check=True).stdout or "[]")
    return sorted(q["kind"] for q in qdiscs), sorted({f["pref"] for f in filters})


def test_suspend_delay_loss_with_tc(lab, make_hosts):
    hosts, (r0, r1) = link(lab, make_hosts)
    h2 = hosts[1]
    untouched = tc_state(lab, h2, r1.port)
    # Suspended: nothing either way; the port stays attached.
    h2.vn("port-set", "97", r1.port, "--suspend")
    kinds, prefs = tc_state(lab, h2, r1.port)
    assert "clsact" in kinds and 1798 in prefs
    result, _ = pings(lab, r0, r1.ip, 3, 0.1, wait=1)
    assert result.transmitted == 3 and result.received == 0
    h2.vn("port-set", "97", r1.port, "--resume")
    lab.wait_ping(r0, r1.ip, timeout=60)
    # 50 ms of delay towards r1: the emulated guest's round trips vary, so a wider band.
    _, base = pings(lab, r0, r1.ip, 8, 0.05)
    h2.vn("port-set", "97", r1.port, "--delay", "50")
    _, slow = pings(lab, r0, r1.ip, 8, 0.05)
    added = statistics.median(slow) - statistics.median(base)
    print(f"median rtt {statistics.median(base):.2f} ms, with 50 ms delay {statistics.median(slow):.2f} ms")
    assert 40.0 <= added <= 90.0, (base, slow)
    # 50 % loss instead: about half of 40 pings lost (the band is 3.8 standard deviations).
    h2.vn("port-set", "97", r1.port, "--loss", "50", "--delay", "0")
    result, _ = pings(lab, r0, r1.ip, 40, 0.02, wait=1)
    print(f"40 pings through 50 % loss: {result.loss:.1f} % lost")
    assert 20.0 <= result.loss <= 80.0
    assert wait_port(h2, r1.port, lambda p: True)["link"] == {"loss": 50, "suspended": False}
    # Cleared: the interface's tc is as it was before.
    h2.vn("port-set", "97", r1.port, "--clear")
    assert tc_state(lab, h2, r1.port) == untouched
    lab.wait_ping(r0, r1.ip, timeout=60)
