"""The events of `vn monitor` (doc/monitor.md), the same whichever datapath serves the host.

A datapath reports only what its tables already know when they change: a MAC of a
vnet now lives somewhere else (`MacChange`: learned, moved, expired).  vnetd sends
these on its `monitor` stream, the kernel module on its generic netlink multicast
group "monitor".  Everything else is decided here, once for both: which changes are
a flapping MAC (reported once, then quiet), and, from the counters `vn monitor`
polls, which peers are up or down and how many packets were dropped for each reason
(at most one event per reason per DROP_INTERVAL, with the count).

An event is a dict of the JSON shape doc/schema/monitor.json documents; `render`
makes the human-readable line of one.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import sxp
from vnet.errors import DatapathError
from vnet.model.vnetid import VnetId

if TYPE_CHECKING:  # datapath -> events (MacChange): for the annotation only
    from vnet.control.datapath import Datapath

#: Where a MAC lives that is on this host (the module's `where`; vnetd adds
#: ":NAME" of the tap, port or endpoint it was seen on).
LOCAL = "local"

#: A MAC that moves back to where it was within FLAP_WINDOW seconds of leaving it is
#: flapping: flagged once, then its moves are not reported until it has stayed in
#: one place for FLAP_STABLE seconds.
FLAP_WINDOW = 30.0
FLAP_STABLE = 60.0
#: Drops of one reason are reported at most once per DROP_INTERVAL seconds.
DROP_INTERVAL = 5.0
#: A peer is up once it has been heard from (VFWD packets received from it grew) and
#: down after PEER_QUIET seconds without a packet from it, or when it is deleted.
PEER_QUIET = 30.0

Event = dict


@dataclass(frozen=True)
class MacChange:
    """A MAC of a vnet changed place: `old` None when it is new, `new` None when it
    expired.  Places are a host's IPv4 address or LOCAL[":NAME"]."""

    vnet: str
    mac: str
    old: str | None
    new: str | None

    def to_json(self) -> dict:
        return {"vnet": self.vnet, "mac": self.mac, "from": self.old, "to": self.new}

    @classmethod
    def from_json(cls, d: dict) -> MacChange:
        return cls(d["vnet"], d["mac"], d["from"], d["to"])


class _Moves:
    """The last move of one MAC, for the flapping rule."""

    __slots__ = ("when", "old", "new", "flapping")

    def __init__(self, when: float, old: str, new: str) -> None:
        self.when = when
        self.old = old
        self.new = new
        self.flapping = False


class Monitor:
    """Turns MAC changes and polled counters into events, passed to `emit`.

    `clock` (monotonic seconds) decides the windows; `wall` stamps the events."""

    def __init__(self, emit: Callable[[Event], None], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, drop_interval: float = DROP_INTERVAL,
                 peer_quiet: float = PEER_QUIET) -> None:
        self.emit = emit
        self.clock = clock
        self.wall = wall
        self.drop_interval = drop_interval
        self.peer_quiet = peer_quiet
        self.moves: dict[tuple[str, str], _Moves] = {}
        self.drop_totals: dict[str, int] | None = None
        self.drop_pending: dict[str, int] = {}  # reason -> dropped since its last event
        self.drop_reported: dict[str, float] = {}
        self.peer_rx: dict[str, int] = {}
        self.peer_heard: dict[str, float] = {}  # the peers that are up, and when last heard

    def _event(self, kind: str, **fields) -> None:
        stamp = datetime.fromtimestamp(self.wall(), timezone.utc)
        self.emit({"time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   "event": kind, **fields})

    # ---- MACs ----------------------------------------------------------------------

    def mac(self, change: MacChange) -> None:
        key = (change.vnet, change.mac)
        if change.old is None:
            self._event("learned", vnet=change.vnet, mac=change.mac, where=change.new)
            return
        if change.new is None:
            self.moves.pop(key, None)
            self._event("expired", vnet=change.vnet, mac=change.mac, where=change.old)
            return
        now = self.clock()
        last = self.moves.get(key)
        if last is not None and last.flapping and now - last.when < FLAP_STABLE:
            last.when = now  # still flapping: quiet, and not stable yet
            return
        if (last is not None and not last.flapping and now - last.when <= FLAP_WINDOW
                and last.old == change.new and last.new == change.old):
            last.when, last.old, last.new, last.flapping = now, change.old, change.new, True
            self._event("flapping", vnet=change.vnet, mac=change.mac, places=[change.new, change.old])
            return
        self.moves[key] = _Moves(now, change.old, change.new)
        self._event("moved", vnet=change.vnet, mac=change.mac, **{"from": change.old, "to": change.new})

    # ---- polled counters -----------------------------------------------------------

    def poll(self, drops: dict[str, int], peers: dict[str, int]) -> None:
        """The datapath's drop totals by reason and VFWD packets received by peer,
        read now (`vn monitor` polls them once a second)."""
        now = self.clock()
        self._drops(drops, now)
        self._peers(peers, now)
        stale = [k for k, m in self.moves.items() if now - m.when > max(FLAP_WINDOW, FLAP_STABLE)]
        for k in stale:
            del self.moves[k]

    def _drops(self, totals: dict[str, int], now: float) -> None:
        last, self.drop_totals = self.drop_totals, dict(totals)
        if last is None:  # the first reading: what was dropped before we started is not news
            return
        for reason, total in totals.items():
            grown = total - last.get(reason, 0)
            if grown > 0:  # (less: the counters started again, from a new vnetd or module)
                self.drop_pending[reason] = self.drop_pending.get(reason, 0) + grown
        for reason, count in list(self.drop_pending.items()):
            if now - self.drop_reported.get(reason, -self.drop_interval) >= self.drop_interval:
                del self.drop_pending[reason]
                self.drop_reported[reason] = now
                self._event("drops", reason=reason, count=count)

    def _peers(self, rx: dict[str, int], now: float) -> None:
        for addr, n in rx.items():
            if addr in self.peer_rx and n != self.peer_rx[addr]:
                if addr not in self.peer_heard:
                    self._event("peer-up", peer=addr)
                self.peer_heard[addr] = now
        for addr, heard in list(self.peer_heard.items()):
            if addr not in rx:
                del self.peer_heard[addr]
                self._event("peer-down", peer=addr, why="deleted")
            elif now - heard >= self.peer_quiet:
                del self.peer_heard[addr]
                self._event("peer-down", peer=addr, why=f"quiet for {self.peer_quiet:g} s")
        self.peer_rx = dict(rx)


def _vnet(text: str) -> str:
    try:
        vid = VnetId.parse(text)
    except ValueError:
        return text
    return vid.short or str(vid)


def render(event: Event) -> str:
    """The human-readable line of an event."""
    kind = event["event"]
    head = f"{event['time']} {kind}"
    if kind in ("learned", "expired"):
        return f"{head} vnet {_vnet(event['vnet'])} {event['mac']} at {event['where']}"
    if kind == "moved":
        return f"{head} vnet {_vnet(event['vnet'])} {event['mac']} from {event['from']} to {event['to']}"
    if kind == "flapping":
        a, b = event["places"]
        return f"{head} vnet {_vnet(event['vnet'])} {event['mac']} between {a} and {b}"
    if kind == "peer-up":
        return f"{head} {event['peer']}"
    if kind == "peer-down":
        return f"{head} {event['peer']} ({event['why']})"
    if kind == "drops":
        return f"{head} {event['reason']} {event['count']}"
    return f"{head} {event}"


#: How often `watch` reads the drop counters and the peers.
POLL_INTERVAL = 1.0


def _drop_totals(recs: list) -> dict[str, int]:
    return {name: int(n) for rec in recs if rec and rec[0] == "drops" for name, n in rec[1:]}


def _peer_rx(recs: list) -> dict[str, int]:
    return {str(sxp.child_value(r, "addr")): int(sxp.child_value(r, "rx_packets", "0")) for r in recs}


def watch(dp: Datapath, emit: Callable[[Event], None], opened: Callable[[], None] | None = None,
          poll_interval: float = POLL_INTERVAL) -> None:
    """Emit the events of the host `dp` serves until the datapath goes away (raised as
    its DatapathError) or the caller is interrupted.  The MAC changes come from the
    datapath as they happen, read in a thread; drops and peers from polling `dp` every
    poll_interval seconds (the same for both datapaths).  `opened` is called once both
    are in place: every change after it is reported."""
    monitor = Monitor(emit)
    changes: queue.Queue = queue.Queue()
    subscribed = threading.Event()

    def read() -> None:
        try:
            for change in dp.mac_changes(subscribed.set):
                changes.put(change)
            changes.put(DatapathError("ECONNRESET", f"the {dp.kind} datapath stopped reporting"))
        except BaseException as e:  # handed to the main thread, which raises it
            changes.put(e)

    threading.Thread(target=read, name="mac-changes", daemon=True).start()
    while not subscribed.is_set():  # first, so a refusal to subscribe is the error told
        try:
            item = changes.get(timeout=0.1)
        except queue.Empty:
            continue
        raise item  # it failed before it was open
    monitor.poll(_drop_totals(dp.stats()), _peer_rx(dp.peers()))
    if opened is not None:
        opened()
    next_poll = time.monotonic() + poll_interval
    while True:
        wait = next_poll - time.monotonic()
        if wait <= 0:  # on time even while changes keep coming
            monitor.poll(_drop_totals(dp.stats()), _peer_rx(dp.peers()))
            next_poll = time.monotonic() + poll_interval
            continue
        try:
            item = changes.get(timeout=wait)
        except queue.Empty:
            continue
        if isinstance(item, BaseException):
            raise item
        monitor.mac(item)
