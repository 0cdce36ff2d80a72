"""The datapath's soft state: where MACs live, which MACs are local, peers, recent floods,
and `Tables`, which holds them with the vnets and the counters for the packet rules.

Plain dicts keyed by bytes so the per-packet code can use them with one lookup.  Time
is passed in by the caller (one clock read per batch of packets, not per packet), which
also makes expiry testable without sleeping.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vnet.control.events import LOCAL
from vnet.wire import stats

if TYPE_CHECKING:  # vnets -> attach -> loop -> tables: for the annotation only
    from vnet.datapath.vnetd.vnets import Vnet

# Reference 4.5 / 1.4: entries live 60 s after their last refresh.  We sweep every
# SWEEP_INTERVAL rather than every TTL, so an entry is gone 60-70 s after its last
# refresh instead of the original's 60-120 s.
ENTRY_TTL = 60.0
SWEEP_INTERVAL = 10.0

STATE_REACHABLE = "reachable"

#: Told (vnet, MAC, old place, new place) when a MAC is learned (old None), moves, or
#: expires (new None); a place is a host's address or "local:NAME" (vnet.control.events).
MacNotify = Callable[[bytes, bytes, "str | None", "str | None"], None]


class VarpEntry:
    """Care-of address of a remote MAC; `addr` is the dotted IPv4 of the host that has it."""

    __slots__ = ("addr", "updated")

    def __init__(self, addr: str, updated: float) -> None:
        self.addr = addr
        self.updated = updated


class VarpCache:
    """(vnet id bytes, MAC bytes) -> VarpEntry, learned from received frames and announces."""

    def __init__(self, ttl: float = ENTRY_TTL) -> None:
        self.ttl = ttl
        self.entries: dict[tuple[bytes, bytes], VarpEntry] = {}
        #: Told of changes only (set by Tables), never of a refresh.
        self.notify: MacNotify | None = None

    def learn(self, vnet: bytes, mac: bytes, addr: str, now: float, prev: str | None = None) -> None:
        """Where `mac` lives now; `prev` is where it was if not in this cache (local)."""
        key = (vnet, mac)
        entry = self.entries.get(key)
        if entry is None or entry.addr != addr:
            self.entries[key] = VarpEntry(addr, now)
            if self.notify is not None:
                self.notify(vnet, mac, entry.addr if entry is not None else prev, addr)
        else:
            entry.updated = now

    def lookup(self, vnet: bytes, mac: bytes) -> str | None:
        entry = self.entries.get((vnet, mac))
        return entry.addr if entry is not None else None

    def forget(self, vnet: bytes, mac: bytes) -> str | None:
        """Drop an entry; returns the address it had."""
        entry = self.entries.pop((vnet, mac), None)
        return entry.addr if entry is not None else None

    def flush(self, vnet: bytes | None = None) -> int:
        """Drop every entry (or every entry of one vnet); returns how many went."""
        if vnet is None:
            n = len(self.entries)
            self.entries.clear()
            return n
        doomed = [k for k in self.entries if k[0] == vnet]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    def sweep(self, now: float) -> int:
        doomed = [k for k, e in self.entries.items() if now - e.updated > self.ttl]
        for k in doomed:
            entry = self.entries.pop(k)
            if self.notify is not None:
                self.notify(k[0], k[1], entry.addr, None)
        return len(doomed)


class VifTable:
    """(vnet id bytes, MAC bytes) -> last time the MAC was seen on (or added to) this host.

    A vif decides whether we answer a VARP request, and a MAC that is new here
    triggers a gratuitous announce so that a moved VM is found again at once.
    """

    def __init__(self, ttl: float = ENTRY_TTL) -> None:
        self.ttl = ttl
        self.entries: dict[tuple[bytes, bytes], float] = {}
        self.sweeps = 0
        #: Told of local MACs expiring (set by Tables); new ones are told by who
        #: adds them (Transmit.announce, the vif command), which knows where.
        self.notify: MacNotify | None = None

    def touch(self, vnet: bytes, mac: bytes, now: float) -> bool:
        """Record a local MAC; True when it was not known before."""
        key = (vnet, mac)
        new = key not in self.entries
        self.entries[key] = now
        return new

    def remove(self, vnet: bytes, mac: bytes) -> bool:
        return self.entries.pop((vnet, mac), None) is not None

    def has(self, vnet: bytes, mac: bytes) -> bool:
        return (vnet, mac) in self.entries

    def flush(self, vnet: bytes) -> None:
        for k in [k for k in self.entries if k[0] == vnet]:
            del self.entries[k]

    def sweep(self, now: float) -> int:
        self.sweeps += 1
        doomed = [k for k, t in self.entries.items() if now - t > self.ttl]
        for k in doomed:
            del self.entries[k]
            if self.notify is not None:
                self.notify(k[0], k[1], LOCAL, None)
        return len(doomed)


@dataclass
class Peer:
    """A host that multicast is forwarded to and accepted from (reference section 5)."""

    addr: str
    port: int
    tx_packets: int = 0
    rx_packets: int = 0


class FloodFilter:
    """Remembers multicast packets recently handled, to break forwarding loops.

    The original had no protection beyond a source check, so two forwarders on one
    subnet could bounce a flood forever.  A packet is identified by its origin and
    its payload; any copy seen again within WINDOW seconds is a duplicate (through a
    second forwarder, or around a loop) and is dropped.  The window is short so that
    a legitimately repeated frame (an ARP retry one second later) still passes.
    """

    WINDOW = 0.5

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self.seen: dict[int, float] = {}

    def first_time(self, origin: str, payload, now: float) -> bool:
        """Check and record a relayed copy: False if it was seen within the window."""
        key = hash((origin, bytes(payload)))
        t = self.seen.get(key)
        if t is not None and now - t <= self.window:
            return False
        self._put(key, now)
        return True

    def record(self, origin: str, payload, now: float) -> None:
        """Record a copy that came straight from its origin: it is never a duplicate
        itself (so a sender's own quick repeats, like MLD reports, pass), but a
        relayed copy of it arriving later is."""
        self._put(hash((origin, bytes(payload))), now)

    def _put(self, key: int, now: float) -> None:
        self.seen[key] = now
        if len(self.seen) > 4096:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        self.seen = {k: t for k, t in self.seen.items() if now - t <= self.window}


class SuperHosts:
    """The hosts known to accept super-frames (doc/wire-format.md, "Super-frames"),
    learned on the wire: a super-frame received from a host, or an announce with the
    super-frame extension, adds it; an announce without the extension removes it.
    Entries do not expire (a host that takes them keeps taking them); at most MAX,
    beyond which hosts simply get plain frames."""

    MAX = 4096

    def __init__(self) -> None:
        self.addrs: set[str] = set()

    def add(self, addr: str) -> None:
        if len(self.addrs) < self.MAX:
            self.addrs.add(addr)

    def discard(self, addr: str) -> None:
        self.addrs.discard(addr)


class Tables:
    """Everything the packet rules look up, learn and count on this host, in one object
    that transmit and receive share: the vnets by id, the VARP cache, the vif table,
    the peers, the flood filter, and the counters and drops (indexed by the constants
    of vnet.wire.stats).  The containers are never replaced, so a rule may keep a
    reference to one."""

    def __init__(self) -> None:
        self.vnets: dict[bytes, Vnet] = {}
        self.varp = VarpCache()
        self.vifs = VifTable()
        self.peers: dict[str, Peer] = {}
        self.floods = FloodFilter()
        self.supers = SuperHosts()
        self.counts = [0] * len(stats.COUNTERS)
        self.drops = [0] * len(stats.DROPS)
        #: Who is told of MAC changes (`vn monitor` streams); the tables call
        #: mac_changed only while there is one.
        self.mac_watchers: list[MacNotify] = []

    def watch_macs(self, fn: MacNotify) -> Callable[[], None]:
        """Tell `fn` of every MAC change from now on; returns what stops it."""
        self.mac_watchers.append(fn)
        self.varp.notify = self.vifs.notify = self.mac_changed

        def stop() -> None:
            self.mac_watchers.remove(fn)
            if not self.mac_watchers:
                self.varp.notify = self.vifs.notify = None
        return stop

    def mac_changed(self, vnet: bytes, mac: bytes, old: str | None, new: str | None) -> None:
        for fn in self.mac_watchers:
            fn(vnet, mac, old, new)

    def sweep(self, now: float) -> None:
        """Expire what was not refreshed; the loop calls this every SWEEP_INTERVAL."""
        self.varp.sweep(now)
        self.vifs.sweep(now)
        self.floods.sweep(now)
