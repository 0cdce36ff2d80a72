"""The event logic of `vn monitor` (vnet.control.events): flapping flagged once, drops
rate-limited, peers up and down, the lines; and where the datapaths' tables report
their MAC changes (vnetd's tables, the module's notifications as the client reads them)."""
from __future__ import annotations

import json

import pytest
from json_contract import check

from vnet.control import events
from vnet.control.events import LOCAL, MacChange, Monitor
from vnet.datapath.kmod.client import MacEvents
from vnet.datapath.kmod.family import (
    VNET_MAC_EVENT_EXPIRED,
    VNET_MAC_EVENT_LEARNED,
    VNET_MAC_EVENT_MOVED,
    VNET_MAC_EVENT_REMOVED,
    VNET_MAC_TABLE_VARP,
    VNET_MAC_TABLE_VIFS,
)
from vnet.datapath.vnetd.tables import Tables
from vnet.model.vnetid import VnetId

VNET = str(VnetId.parse("97"))
MAC = "aa:00:00:00:00:01"
A, B, C = "10.0.0.2", "10.0.0.3", "10.0.0.4"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mon():
    clock = Clock()
    out: list[dict] = []
    m = Monitor(out.append, clock=clock, wall=lambda: 1764648000.25)
    m.out, m.tick = out, clock
    return m


def change(old, new, mac=MAC):
    return MacChange(VNET, mac, old, new)


def kinds(mon) -> list[str]:
    return [e["event"] for e in mon.out]


def test_learned_moved_expired(mon):
    mon.mac(change(None, A))
    mon.mac(change(A, B))
    mon.mac(change(B, None))
    assert mon.out == [
        {"time": "2025-12-02T04:00:00.250Z", "event": "learned", "vnet": VNET, "mac": MAC, "where": A},
        {"time": "2025-12-02T04:00:00.250Z", "event": "moved", "vnet": VNET, "mac": MAC, "from": A, "to": B},
        {"time": "2025-12-02T04:00:00.250Z", "event": "expired", "vnet": VNET, "mac": MAC, "where": B},
    ]


def test_alternating_mac_is_flagged_once_then_quiet_until_stable(mon):
    mon.mac(change(None, A))
    mon.mac(change(A, B))
    for _ in range(10):
        mon.tick.now += 1
        mon.mac(change(B, A))
        mon.mac(change(A, B))
    assert kinds(mon) == ["learned", "moved", "flapping"]
    assert sorted(mon.out[-1]["places"]) == [A, B]
    # Stable for FLAP_STABLE: its next move is reported again, as a move.
    mon.tick.now += events.FLAP_STABLE
    mon.mac(change(B, C))
    assert kinds(mon)[-1] == "moved"
    # ... and a new round of flapping is flagged again, once.
    mon.mac(change(C, B))
    mon.mac(change(B, C))
    assert kinds(mon)[-2:] == ["moved", "flapping"]


def test_a_move_and_a_move_back_later_is_no_flapping(mon):
    mon.mac(change(A, B))
    mon.tick.now += events.FLAP_WINDOW + 1
    mon.mac(change(B, A))
    assert kinds(mon) == ["moved", "moved"]


def test_moves_through_three_places_are_no_flapping(mon):
    mon.mac(change(A, B))
    mon.mac(change(B, C))
    mon.mac(change(C, A))
    assert kinds(mon) == ["moved", "moved", "moved"]


def test_flapping_is_per_mac(mon):
    other = "aa:00:00:00:00:02"
    for mac in (MAC, other):
        mon.mac(change(A, B, mac))
        mon.mac(change(B, A, mac))
    assert [(e["event"], e["mac"]) for e in mon.out] == [
        ("moved", MAC), ("flapping", MAC), ("moved", other), ("flapping", other)]


def test_drops_are_rate_limited_and_add_up(mon):
    mon.poll({"short": 7}, {})  # before we started: not news
    assert mon.out == []
    sent = 0
    for step in range(12):  # a storm over 12 polls, one second apart
        mon.tick.now += 1
        sent += 100
        mon.poll({"short": 7 + sent, "bad-tag": 1 + step // 6}, {})
    drops = [e for e in mon.out if e["event"] == "drops"]
    short = [e for e in drops if e["reason"] == "short"]
    # At most one per DROP_INTERVAL: the first at once, then one per interval.
    assert len(short) == 1 + (12 - 1) // int(events.DROP_INTERVAL)
    mon.tick.now += events.DROP_INTERVAL
    mon.poll({"short": 7 + sent, "bad-tag": 2}, {})
    short = [e for e in mon.out if e["event"] == "drops" and e["reason"] == "short"]
    assert sum(e["count"] for e in short) == sent
    # absent at first is 0 (the datapaths leave 0 out): it went 0, 1, 2
    assert sum(e["count"] for e in mon.out if e["event"] == "drops" and e["reason"] == "bad-tag") == 2


def test_counters_that_start_again_are_not_negative_drops(mon):
    mon.poll({"short": 50}, {})
    mon.tick.now += 10
    mon.poll({"short": 3}, {})  # a new vnetd or module
    mon.tick.now += 10
    mon.poll({"short": 5}, {})
    assert [(e["reason"], e["count"]) for e in mon.out] == [("short", 2)]


def test_peer_up_when_heard_down_when_quiet_or_deleted(mon):
    mon.poll({}, {A: 5, B: 0})
    mon.tick.now += 1
    mon.poll({}, {A: 5, B: 0})
    assert mon.out == []  # nothing heard since we started
    mon.tick.now += 1
    mon.poll({}, {A: 6, B: 1})
    assert [(e["event"], e["peer"]) for e in mon.out] == [("peer-up", A), ("peer-up", B)]
    mon.tick.now += events.PEER_QUIET - 1
    mon.poll({}, {A: 7, B: 1})
    mon.tick.now += 1
    mon.poll({}, {A: 7})
    assert [(e["event"], e["peer"], e.get("why")) for e in mon.out[2:]] == [("peer-down", B, "deleted")]
    mon.tick.now += events.PEER_QUIET
    mon.poll({}, {A: 7})
    assert mon.out[-1]["event"] == "peer-down" and mon.out[-1]["peer"] == A
    assert mon.out[-1]["why"] == f"quiet for {events.PEER_QUIET:g} s"


def test_render_lines(mon):
    mon.mac(change(None, A))
    mon.mac(change(A, f"{LOCAL}:vnif97"))
    mon.mac(change(f"{LOCAL}:vnif97", A))
    mon.poll({}, {})
    mon.tick.now += 1
    mon.poll({"short": 3}, {B: 0})
    mon.tick.now += 1
    mon.poll({}, {B: 1})
    stamp = "2025-12-02T04:00:00.250Z"
    assert [events.render(e) for e in mon.out] == [
        f"{stamp} learned vnet 97 {MAC} at {A}",
        f"{stamp} moved vnet 97 {MAC} from {A} to local:vnif97",
        f"{stamp} flapping vnet 97 {MAC} between {A} and local:vnif97",
        f"{stamp} drops short 3",
        f"{stamp} peer-up {B}",
    ]
    mon.poll({}, {})
    mon.mac(change(A, None))
    mon.mac(change(None, "aa:00:00:00:00:09"))  # not a place: the schema refuses it
    *good, bad = mon.out
    for e in good:
        check("monitor", json.loads(json.dumps(e)))
    with pytest.raises(AssertionError):
        check("monitor", bad)


def test_vnetd_tables_tell_changes_not_refreshes():
    t = Tables()
    seen: list[tuple] = []
    vid, mac = VnetId.parse("97").packed, bytes.fromhex("aa0000000001")
    t.varp.learn(vid, mac, A, 1.0)  # nobody watches: nothing to tell
    stop = t.watch_macs(lambda *c: seen.append(c))
    t.varp.learn(vid, mac, A, 2.0)  # a refresh
    t.varp.learn(vid, mac, B, 3.0)
    t.varp.learn(vid, bytes.fromhex("aa0000000002"), C, 3.0, LOCAL)
    t.vifs.touch(vid, mac, 3.0)
    t.sweep(3.0 + t.varp.ttl + 1)
    assert seen == [(vid, mac, A, B), (vid, bytes.fromhex("aa0000000002"), LOCAL, C),
                    (vid, mac, B, None), (vid, bytes.fromhex("aa0000000002"), C, None), (vid, mac, LOCAL, None)]
    stop()
    assert t.varp.notify is None and t.vifs.notify is None


def test_module_notifications_read_as_vnetd_changes():
    ev = MacEvents()
    vid, mac = VnetId.parse("97").packed, bytes.fromhex("aa0000000001")

    def read(*args):
        c = ev.change(*args[:2], vid, mac, *args[2:])
        return None if c is None else (c.old, c.new)
    assert read(VNET_MAC_EVENT_LEARNED, VNET_MAC_TABLE_VARP, A, None) == (None, A)
    assert read(VNET_MAC_EVENT_MOVED, VNET_MAC_TABLE_VARP, B, A) == (A, B)
    # A VM arrives here: its VARP entry is removed, then it is learned local.
    assert read(VNET_MAC_EVENT_REMOVED, VNET_MAC_TABLE_VARP, B, None) is None
    assert read(VNET_MAC_EVENT_LEARNED, VNET_MAC_TABLE_VIFS, "0.0.0.0", None) == (B, LOCAL)
    # It leaves: an announce removes the vif, then the VARP cache learns it.
    assert read(VNET_MAC_EVENT_REMOVED, VNET_MAC_TABLE_VIFS, "0.0.0.0", None) is None
    assert read(VNET_MAC_EVENT_LEARNED, VNET_MAC_TABLE_VARP, C, None) == (LOCAL, C)
    assert read(VNET_MAC_EVENT_EXPIRED, VNET_MAC_TABLE_VARP, C, None) == (C, None)
    c = ev.change(VNET_MAC_EVENT_LEARNED, VNET_MAC_TABLE_VARP, vid, mac, A, None)
    assert (c.vnet, c.mac) == (VNET, MAC)
