"""Link control of ports (doc/ports.md, "Link control"): the settings and their checks,
vnetd's PortLink with a clock and timers of the test's own (no time passes), the
command language, the controller, and the module client's PORT_SET."""
from __future__ import annotations

import os
import random

import pytest

import sxp
from vnet.control.controller import Controller
from vnet.control.datapath import Datapath
from vnet.control.language import evaluate
from vnet.datapath.kmod import client as kmod_client
from vnet.datapath.kmod.client import KmodClient
from vnet.datapath.vnetd import linkctl as vlink
from vnet.datapath.vnetd.loop import Clock
from vnet.datapath.vnetd.offload import VNET_HDR_LEN, ZERO_HDR
from vnet.errors import DatapathError
from vnet.model.config import ConfigError, VnetConfig
from vnet.model.linkctl import LinkControl, LinkError, format_rate, parse_rate
from vnet.model.state import StateError
from vnet.model.vnetid import VnetId
from vnet.wire import stats

V97 = VnetId.parse("97")


# ---- the settings -------------------------------------------------------------------

def test_port_options_round_trip_through_the_config() -> None:
    text = ("(vnet (id 97) (port a (loss 10) (delay 50ms) (jitter 5) (corrupt 0.5) (rate 10mbit)) "
            "(port b) (port c (suspended yes)) (port d (loss 0)))")
    cfg = VnetConfig.from_sxp(sxp.parse(text)[0])
    assert cfg.ports == ("a", "b", "c", "d")
    assert cfg.link("a") == LinkControl(loss=10, delay=50, jitter=5, corrupt=0.5, rate=10_000_000)
    assert cfg.link("b") == cfg.link("d") == LinkControl()  # (loss 0) is none
    assert cfg.link("c").suspended and not cfg.link("c").impaired
    ports = [c for c in cfg.to_sxp() if c[0] == "port"]
    assert ports == [["port", "a", ["loss", "10"], ["delay", "50"], ["jitter", "5"], ["corrupt", "0.5"],
                      ["rate", "10mbit"]], ["port", "b"], ["port", "c", ["suspended", "yes"]], ["port", "d"]]
    assert VnetConfig.from_sxp(cfg.to_sxp()) == cfg
    # A port removed takes its link control with it; one added has none.
    assert cfg.with_ports(("b", "c")).links == (("c", LinkControl(suspended=True)),)


@pytest.mark.parametrize("option, problem", [
    ("(loss 101)", "field 'port' a: loss '101' is out of range: 0 to 100 percent"),
    ("(loss ten)", "field 'port' a: loss 'ten' is not a number (percent)"),
    ("(delay -1)", "field 'port' a: delay '-1' is out of range: 0 to 60000 ms"),
    ("(rate fast)", "field 'port' a: rate 'fast' is not a rate; write it as tc does"),
    ("(rate 1bit)", "field 'port' a: rate '1bit' is out of range: 8kbit to 100gbit"),
    ("(suspended maybe)", "field 'port' a: suspended 'maybe': write yes or no"),
    ("(los 1)", "field 'port' a: unknown link option 'los'"),
    ("(loss 1) (loss 2)", "field 'port' a: link option 'loss' given twice"),
    ("(loss)", "field 'port' a: expected (OPTION VALUE)"),
])
def test_bad_port_options_name_the_file_port_option_and_value(option: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        VnetConfig.from_sxp(sxp.parse(f"(vnet (id 97) (port a {option}))")[0], "lab.sxp")
    assert str(e.value).startswith(f"lab.sxp: {problem}")


def test_rates_are_read_and_written_as_tc_does() -> None:
    assert parse_rate("10mbit") == 10_000_000
    assert parse_rate("512kbit") == 512_000
    assert parse_rate("1gbit") == 1_000_000_000
    assert parse_rate("1.5mbit") == 1_500_000
    assert parse_rate("1mbps") == 8_000_000  # bytes per second, as tc
    assert parse_rate("64000") == 64_000
    assert [format_rate(r) for r in (10_000_000, 512_000, 1_000_000_000, 1_500_000, 8_500)] == [
        "10mbit", "512kbit", "1gbit", "1500kbit", "8500bit"]


def test_changes_keep_what_is_not_named_and_zero_or_none_removes() -> None:
    link = LinkControl().changed(loss="10", delay="50", rate="10mbit")
    assert link.changed(delay="0") == LinkControl(loss=10, rate=10_000_000)
    assert link.changed(rate="none", loss="none") == LinkControl(delay=50)
    assert link.changed(suspended="yes").cleared() == LinkControl(suspended=True)
    assert str(LinkControl(loss=10, delay=50, suspended=True)) == "suspended, loss 10, delay 50"
    assert str(LinkControl()) == "none"
    with pytest.raises(LinkError, match="corrupt '200' is out of range"):
        link.changed(corrupt="200")


# ---- vnetd's PortLink ---------------------------------------------------------------

class FakePort:
    """What PortLink uses of a Port: its fd (a pipe here) and counters."""

    def __init__(self) -> None:
        self.rfd, self.fd = os.pipe()
        os.set_blocking(self.rfd, False)
        self.tx_packets = self.tx_bytes = 0
        self.link = None

    def sent(self) -> list[bytes]:
        """The frames written, each 10 + 60 bytes here."""
        try:
            data = os.read(self.rfd, 1 << 20)
        except BlockingIOError:
            return []
        return [data[i:i + 70] for i in range(0, len(data), 70)]

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.fd)


class StillClock(Clock):
    """Time moves only when the test says."""

    def tick(self) -> None:
        pass


@pytest.fixture
def rig():
    port, clock, timers = FakePort(), StillClock(100.0), []
    drops = [0] * len(stats.DROPS)
    yield port, clock, timers, drops
    port.close()


def _link(rig, link: LinkControl, seed: int = 1) -> vlink.PortLink:
    port, clock, timers, drops = rig
    pl = vlink.PortLink(port, link, clock, lambda when, fn: timers.append((when, fn)), drops,
                        random.Random(seed))
    port.link = pl
    return pl


def _frame(n: int) -> bytes:
    return ZERO_HDR + n.to_bytes(2, "big") + bytes(58)


def _fire(rig, until: float) -> None:
    """Run the timers due by `until`, as the loop would, in time order."""
    port, clock, timers, _ = rig
    while timers and min(timers)[0] <= until:
        timers.sort(key=lambda t: t[0])
        when, fn = timers.pop(0)
        clock.now = when
        fn()
    clock.now = until


def test_suspended_port_sends_nothing_and_counts_it(rig) -> None:
    port, _, timers, drops = rig
    pl = _link(rig, LinkControl(suspended=True))
    for i in range(5):
        pl.send(_frame(i))
    assert port.sent() == [] and timers == []
    assert drops[stats.D_LINK_SUSPENDED] == 5
    pl.set(LinkControl())  # resumed, live
    pl.send(_frame(9))
    assert port.sent() == [_frame(9)] and port.tx_packets == 1


def test_loss_drops_about_its_share_and_every_frame_is_counted(rig) -> None:
    port, _, _, drops = rig
    pl = _link(rig, LinkControl(loss=10))
    for i in range(2000):
        pl.send(_frame(i))
        port.sent()
    lost = drops[stats.D_LINK_LOSS]
    assert lost + port.tx_packets == 2000
    assert 100 < lost < 300  # a seeded generator: the same every run


def test_corruption_flips_one_bit_of_the_ethernet_frame(rig) -> None:
    port, _, _, _ = rig
    pl = _link(rig, LinkControl(corrupt=100))
    frame = _frame(7)
    pl.send(memoryview(frame))
    (got,) = port.sent()
    assert got[:VNET_HDR_LEN] == ZERO_HDR  # the virtio-net header is left alone
    diff = [a ^ b for a, b in zip(got, frame) if a != b]
    assert len(diff) == 1 and bin(diff[0]).count("1") == 1


def test_delay_holds_frames_on_one_timer_and_keeps_their_order(rig) -> None:
    port, clock, timers, _ = rig
    pl = _link(rig, LinkControl(delay=50, jitter=40))
    for i in range(20):
        pl.send(memoryview(bytearray(_frame(i))))  # a buffer the caller reuses: copied
        clock.now += 0.001
    assert port.sent() == [] and len(timers) == 1  # one timer, for the head
    _fire(rig, 100.0 + 0.02 + 0.09 + 0.001)
    got = port.sent()
    assert got == [_frame(i) for i in range(20)]
    assert timers == [] and port.tx_packets == 20


def test_removing_link_control_lets_queued_frames_leave_first(rig) -> None:
    port, clock, timers, _ = rig
    pl = _link(rig, LinkControl(delay=10))
    pl.send(_frame(1))
    pl.set(LinkControl())
    pl.send(_frame(2))  # behind the one queued, not before it
    assert port.sent() == []
    _fire(rig, 100.02)
    assert port.sent() == [_frame(1), _frame(2)]
    assert port.link is None  # the plain path again


def test_rate_paces_frames_and_drops_beyond_the_queue(rig) -> None:
    port, clock, timers, drops = rig
    # 60-byte frames at 48 kbit/s: 10 ms each; the queue holds QUEUE_TIME (100 ms).
    pl = _link(rig, LinkControl(rate=48_000))
    for i in range(30):
        pl.send(_frame(i))
    sent_now = port.sent()
    assert sent_now == [_frame(0)]
    assert drops[stats.D_LINK_RATE] == 30 - 1 - 10  # 10 wait (10 to 100 ms behind), the rest dropped
    _fire(rig, 100.055)
    assert len(port.sent()) == 5  # at 10, 20, 30, 40, 50 ms
    _fire(rig, 101.0)
    assert len(port.sent()) == 5 and port.tx_packets == 11


def test_frames_queued_when_the_port_goes_are_counted(rig) -> None:
    port, _, timers, drops = rig
    pl = _link(rig, LinkControl(delay=10))
    pl.send(_frame(1))
    pl.send(_frame(2))
    pl.close()
    _fire(rig, 101.0)
    assert port.sent() == [] and drops[stats.D_TAP_WRITE_ERROR] == 2


# ---- the command language and the controller ---------------------------------------

class Links(Datapath):
    """A datapath double holding link controls; refuses port `nonetem0` as a module host
    without netem does."""

    kind = "test"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def port_set(self, vid: VnetId, ifname: str, link: LinkControl) -> None:
        if ifname == "nonetem0" and link.impaired:
            raise DatapathError("EOPNOTSUPP", "port nonetem0: link control on the kernel module datapath "
                                "needs the netem qdisc (kernel module sch_netem), which this kernel lacks")
        self.calls.append((str(vid), ifname, link))

    def ports(self) -> list:
        return [["port", ["vnet", str(V97)], ["ifname", "r1"], ["state", "waiting"]]]

    def vnets(self) -> list:
        return [["vnet", ["id", str(V97)]]]

    vnet_add = vnet_del = vnet_keys = port_add = port_del = vif_add = vif_del = vifs = \
        peer_add = peer_del = endpoint_add = endpoint_del = endpoints = \
        peers = varp_flush = varp = set_mcaddr = stats = lambda self, *a: None  # type: ignore[assignment]


def test_port_set_in_the_command_language() -> None:
    dp = Links()
    evaluate(dp, sxp.parse("(port.set (vnet 97) (ifname r1) (loss 10) (suspended yes))")[0])
    assert dp.calls == [(str(V97), "r1", LinkControl(loss=10, suspended=True))]
    with pytest.raises(DatapathError, match=r"port.set: port r1: loss '1e9' is out of range") as e:
        evaluate(dp, sxp.parse("(port.set (vnet 97) (ifname r1) (loss 1e9))")[0])
    assert e.value.code == "EINVAL"


def test_controller_changes_live_and_keeps_it(tmp_path) -> None:
    dp = Links()
    ctrl = Controller(str(tmp_path), datapath=dp)
    ctrl.create_vnet(VnetConfig.from_cli("97", ports=("r1", "nonetem0")))
    assert ctrl.set_port_link("97", "r1", loss="10", delay="50") == LinkControl(loss=10, delay=50)
    assert ctrl.set_port_link("97", "r1", suspend=True, delay="none") == LinkControl(loss=10, suspended=True)
    assert ctrl.set_port_link("vnif97", "r1", clear=True) == LinkControl(suspended=True)
    assert ctrl.find_vnet("97").link("r1") == LinkControl(suspended=True)
    # Bad values, an unknown port, a datapath that cannot: errors, and nothing changes.
    with pytest.raises(StateError, match=r"^port r1 of vnet .*: rate '10mbps!' is not a rate"):
        ctrl.set_port_link("97", "r1", rate="10mbps!", suspend=False)
    with pytest.raises(StateError, match=r"has no port r9 \(its ports: r1, nonetem0\)"):
        ctrl.set_port_link("97", "r9", loss="1")
    with pytest.raises(DatapathError, match="needs the netem qdisc"):
        ctrl.set_port_link("97", "nonetem0", loss="1")
    assert ctrl.find_vnet("97").links == (("r1", LinkControl(suspended=True)),)
    assert len(dp.calls) == 3
    # The listing gets the link control from the state where the datapath has none.
    (rec,) = ctrl.ports()
    assert sxp.children(rec, "link") == [["link", ["suspended", "yes"]]]


# ---- module hosts: the module's PORT_SET ---------------------------------------------

def test_kmod_link_attributes_carry_every_setting_both_ways() -> None:
    """PORT_SET sends the whole link control (millionths, microseconds, bit/s) and a
    PORT_GET message with those attributes reads back as the same LinkControl."""
    link = LinkControl(loss=12.5, delay=50, jitter=0.5, corrupt=0.1, rate=10_000_000, suspended=True)
    attrs = dict(kmod_client.link_attrs(link))
    assert attrs == {"VNET_A_LINK_SUSPENDED": 1, "VNET_A_LINK_LOSS": 125_000, "VNET_A_LINK_CORRUPT": 1000,
                     "VNET_A_LINK_DELAY": 50_000, "VNET_A_LINK_JITTER": 500, "VNET_A_LINK_RATE": 10_000_000}

    class Msg:
        def get_attr(self, name: str) -> object:
            return {k: v for k, v in attrs.items() if v}.get(name)

    assert kmod_client.link_of(Msg()) == link
    assert dict(kmod_client.link_attrs(LinkControl())) == dict.fromkeys(attrs, 0)
    attrs = {}
    assert kmod_client.link_of(Msg()) == LinkControl()


def test_kmod_client_port_set_asks_the_module_and_names_what_is_missing() -> None:
    """port_set is one PORT_SET (waiting ports too: no interface needed); the module's
    one ENOENT is told apart as "vnet X does not exist" or "vnet X has no port Y"."""
    sent: list = []
    tc_calls: list = []

    class Client(KmodClient):
        def __init__(self) -> None:
            self.tc = lambda argv: (tc_calls.append(argv), (1, ""))[1]  # no such device

        def _call(self, cmd, attrs, what, known=None, dump=False):
            sent.append((cmd, attrs))
            if dict(attrs)["VNET_A_IFNAME"] != "r1":
                raise DatapathError("ENOENT", f"{what}: no such port on this vnet")
            return []

        def _running(self) -> list:
            class M:
                def get_attr(self, name: str) -> bytes:
                    return V97.packed
            return [M()]

    client = Client()
    client.port_set(V97, "r1", LinkControl(delay=5, suspended=True))
    cmd, attrs = sent[0]
    assert cmd == kmod_client.VNET_CMD_PORT_SET
    assert dict(attrs)["VNET_A_LINK_DELAY"] == 5000 and dict(attrs)["VNET_A_LINK_SUSPENDED"] == 1
    assert tc_calls == [["qdisc", "show", "dev", "r1"]]
    with pytest.raises(DatapathError, match=f"^vnet {V97} has no port r9$"):
        client.port_set(V97, "r9", LinkControl(delay=5))
    with pytest.raises(DatapathError, match="does not exist"):
        client.port_set(VnetId.parse("98"), "r9", LinkControl(delay=5))


def test_old_tc_from_before_the_upgrade_is_taken_off_and_only_it() -> None:
    """An interface still carrying the netem 1798: and drop filters of preference 1798
    that `vn` gave it before the module did link control loses exactly those."""
    calls: list[str] = []
    outputs = {
        "qdisc show dev p1": "qdisc netem 1798: root refcnt 2 limit 1000 delay 50ms\n"
                             "qdisc clsact ffff: parent ffff:fff1\n",
        "filter show dev p1 ingress": "filter protocol all pref 1798 matchall chain 0 \n"
                                      "filter protocol all pref 49152 u32 chain 0 \n",
        "filter show dev p1 egress": "filter protocol all pref 49152 u32 chain 0 \n",
    }

    def run(argv: list[str]) -> tuple[int, str]:
        calls.append(" ".join(argv))
        return 0, outputs.get(" ".join(argv), "")

    kmod_client.drop_old_tc("p1", run)
    assert [c for c in calls if " del " in f" {c} "] == ["qdisc del dev p1 root handle 1798:",
                                                         "filter del dev p1 ingress pref 1798"]
    calls.clear()
    outputs["qdisc show dev p1"] = "qdisc noqueue 0: root refcnt 2\n"
    kmod_client.drop_old_tc("p1", run)
    assert calls == ["qdisc show dev p1"]  # nothing of ours: one look, no change


def test_creating_again_with_exist_ok_ignores_link_control_unless_given(tmp_path) -> None:
    """Link control is changed live, as keys are rotated: a script that says the vnet and
    its ports should exist does not fail because a port was impaired since."""
    ctrl = Controller(str(tmp_path), datapath=Links())
    ctrl.create_vnet(VnetConfig.from_cli("97", ports=("r1",)))
    ctrl.set_port_link("97", "r1", loss="10")
    held = ctrl.create_vnet(VnetConfig.from_cli("97", ports=("r1",)), exist_ok=True)
    assert held.link("r1") == LinkControl(loss=10)
    other = VnetConfig.from_sxp(sxp.parse("(vnet (id 97) (port r1 (loss 20)))")[0])
    with pytest.raises(StateError, match=r"port r1 \(loss 10\) \(not r1 \(loss 20\)\)"):
        ctrl.create_vnet(other, exist_ok=True)
