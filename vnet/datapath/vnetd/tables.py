"""The datapath's soft state: where MACs live, which MACs are local, peers, recent floods,
and `Tables`, which holds them with the vnets and the counters for the packet rules.

Plain dicts keyed by bytes so the per-packet code can use them with one lookup.  Time
is passed in by the caller (one clock read per batch of packets, not per packet), which
also makes expiry testable without sleeping.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from vnet.control.events import LOCAL
from vnet.errors import DatapathError
from vnet.wire import stats

if TYPE_CHECKING:  # vnets -> attach -> loop -> tables: for the annotation only
    from vnet.datapath.vnetd.vnets import Vnet

# Reference 4.5 / 1.4: entries live 60 s after their last refresh.  We sweep every
# SWEEP_INTERVAL rather than every TTL, so an entry is gone 60-70 s after its last
# refresh instead of the original's 60-120 s.
ENTRY_TTL = 60.0
SWEEP_INTERVAL = 10.0

STATE_REACHABLE = "reachable"

#: MACs one vnet may hold in the VARP cache, and in the vif table; and the plain vnets
#: together (a secure vnet's entries come from key holders only, so it is held to its
#: own share and never crowded out).  The module's VNET_MAX_VNET_MACS and
#: VNET_MAX_TABLE_MACS (kmod/vnet.yaml): a sender on the vnet or the underlay chooses
#: the MACs, so a full table learns nothing new until entries expire (drop reason
#: `table-full`), as in the module (doc/kmod.md, "Bounds").
MAX_VNET_MACS = 4096
MAX_TABLE_MACS = 65536
VIFS_FULL = (f"the vif table is full: at most {MAX_VNET_MACS} MACs a vnet, "
             f"{MAX_TABLE_MACS} of the plain vnets together")

#: Told (vnet, MAC, old place, new place) when a MAC is learned (old None), moves, or
#: expires (new None); a place is a host's address or "local:NAME" (vnet.control.events).
MacNotify = Callable[[bytes, bytes, "str | None", "str | None"], None]


class MacMirror(Protocol):
    """Who keeps a copy of a table (vnetd's fast path, vnet.datapath.fastpath): told
    of every entry added, moved or removed, never of a refresh."""

    def set(self, vnet: bytes, mac: bytes, addr: str | None) -> None: ...

    def delete(self, vnet: bytes, mac: bytes) -> None: ...


class VarpEntry:
    """Care-of address of a remote MAC; `addr` is the dotted IPv4 of the host that has it."""

    __slots__ = ("addr", "updated")

    def __init__(self, addr: str, updated: float) -> None:
        self.addr = addr
        self.updated = updated


class MacTable:
    """What the VARP cache and the vif table share: entries keyed by (vnet id, MAC), and
    how many each vnet holds, so that a new MAC is refused once its vnet has
    MAX_VNET_MACS, or a plain vnet's once the plain vnets have MAX_TABLE_MACS.

    Only adding and removing entries counts; a refresh is the one dict store it was."""

    def __init__(self, ttl: float = ENTRY_TTL) -> None:
        self.ttl = ttl
        self.entries: dict = {}
        #: Entries per vnet id (vnets with none are not listed).
        self.per_vnet: dict[bytes, int] = {}
        #: The vnets among them whose entries do not count in `plain` (secure ones).
        self.secure: set[bytes] = set()
        self.plain = 0
        self.mirror: MacMirror | None = None

    def room(self, vnet: bytes, plain: bool = True) -> bool:
        """Whether a new entry of `vnet` may be added."""
        return self.per_vnet.get(vnet, 0) < MAX_VNET_MACS and (not plain or self.plain < MAX_TABLE_MACS)

    def _added(self, vnet: bytes, plain: bool) -> None:
        self.per_vnet[vnet] = self.per_vnet.get(vnet, 0) + 1
        if plain:
            self.plain += 1
        else:
            self.secure.add(vnet)

    def _removed(self, vnet: bytes) -> None:
        n = self.per_vnet[vnet] - 1
        if vnet not in self.secure:
            self.plain -= 1
        if n:
            self.per_vnet[vnet] = n
        else:
            del self.per_vnet[vnet]
            self.secure.discard(vnet)

    def _drop(self, keys: list) -> None:
        for k in keys:
            del self.entries[k]
            self._removed(k[0])
            if self.mirror is not None:
                self.mirror.delete(*k)


class VarpCache(MacTable):
    """(vnet id bytes, MAC bytes) -> VarpEntry, learned from received frames and announces."""

    def __init__(self, ttl: float = ENTRY_TTL) -> None:
        super().__init__(ttl)
        self.entries: dict[tuple[bytes, bytes], VarpEntry] = {}
        #: Told of changes only (set by Tables), never of a refresh.
        self.notify: MacNotify | None = None

    def learn(self, vnet: bytes, mac: bytes, addr: str, now: float, prev: str | None = None,
              plain: bool = True) -> bool:
        """Where `mac` lives now; `prev` is where it was if not in this cache (local).
        False when it is new and its vnet has no room (the caller counts `table-full`);
        `plain` says whether the vnet is a plain one (security none)."""
        key = (vnet, mac)
        entry = self.entries.get(key)
        if entry is None or entry.addr != addr:
            if entry is None:
                if not self.room(vnet, plain):
                    return False
                self._added(vnet, plain)
            self.entries[key] = VarpEntry(addr, now)
            if self.mirror is not None:
                self.mirror.set(vnet, mac, addr)
            if self.notify is not None:
                self.notify(vnet, mac, entry.addr if entry is not None else prev, addr)
        else:
            entry.updated = now
        return True

    def lookup(self, vnet: bytes, mac: bytes) -> str | None:
        entry = self.entries.get((vnet, mac))
        return entry.addr if entry is not None else None

    def forget(self, vnet: bytes, mac: bytes) -> str | None:
        """Drop an entry; returns the address it had."""
        entry = self.entries.pop((vnet, mac), None)
        if entry is None:
            return None
        self._removed(vnet)
        if self.mirror is not None:
            self.mirror.delete(vnet, mac)
        return entry.addr

    def flush(self, vnet: bytes | None = None) -> int:
        """Drop every entry (or every entry of one vnet); returns how many went."""
        if vnet is None:
            n = len(self.entries)
            if self.mirror is not None:
                for k in self.entries:
                    self.mirror.delete(*k)
            self.entries.clear()
            self.per_vnet.clear()
            self.secure.clear()
            self.plain = 0
            return n
        doomed = [k for k in self.entries if k[0] == vnet]
        self._drop(doomed)
        return len(doomed)

    def sweep(self, now: float) -> int:
        doomed = [k for k, e in self.entries.items() if now - e.updated > self.ttl]
        for k in doomed:
            entry = self.entries.pop(k)
            self._removed(k[0])
            if self.mirror is not None:
                self.mirror.delete(*k)
            if self.notify is not None:
                self.notify(k[0], k[1], entry.addr, None)
        return len(doomed)


class VifTable(MacTable):
    """(vnet id bytes, MAC bytes) -> last time the MAC was seen on (or added to) this host.

    A vif decides whether we answer a VARP request, and a MAC that is new here
    triggers a gratuitous announce so that a moved VM is found again at once.
    """

    def __init__(self, ttl: float = ENTRY_TTL) -> None:
        super().__init__(ttl)
        self.entries: dict[tuple[bytes, bytes], float] = {}
        self.sweeps = 0
        #: Told of local MACs expiring (set by Tables); new ones are told by who
        #: adds them (Transmit.announce, the vif command), which knows where.
        self.notify: MacNotify | None = None

    def add(self, vnet: bytes, mac: bytes, now: float, plain: bool = True) -> bool:
        """Record a MAC not in the table; False when its vnet has no room."""
        if not self.room(vnet, plain):
            return False
        self._added(vnet, plain)
        self.entries[(vnet, mac)] = now
        if self.mirror is not None:
            self.mirror.set(vnet, mac, None)
        return True

    def touch(self, vnet: bytes, mac: bytes, now: float, plain: bool = True) -> bool:
        """Record a local MAC; True when it was not known before.  A new one its vnet
        has no room for is refused with ENOSPC (`vn vif-add`, as the module's VIF_ADD)."""
        key = (vnet, mac)
        if key in self.entries:
            self.entries[key] = now
            return False
        if not self.add(vnet, mac, now, plain):
            raise DatapathError("ENOSPC", VIFS_FULL)
        return True

    def remove(self, vnet: bytes, mac: bytes) -> bool:
        if self.entries.pop((vnet, mac), None) is None:
            return False
        self._removed(vnet)
        if self.mirror is not None:
            self.mirror.delete(vnet, mac)
        return True

    def has(self, vnet: bytes, mac: bytes) -> bool:
        return (vnet, mac) in self.entries

    def flush(self, vnet: bytes) -> None:
        self._drop([k for k in self.entries if k[0] == vnet])

    def sweep(self, now: float) -> int:
        self.sweeps += 1
        doomed = [k for k, t in self.entries.items() if now - t > self.ttl]
        for k in doomed:
            del self.entries[k]
            self._removed(k[0])
            if self.mirror is not None:
                self.mirror.delete(*k)
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
    #: Packets remembered at most.  Past it (more distinct floods within the window
    #: than this), the oldest half is forgotten at once: forgetting can only let one
    #: duplicate through, never drop a new packet, and in one step the cost stays
    #: constant per packet.  The module keeps 1024 slots, a collision evicting the
    #: older key: the same policy, in its own shape.
    MAX = 4096

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
        seen = self.seen
        seen[key] = now
        if len(seen) > self.MAX:
            self.sweep(now)
            if len(self.seen) > self.MAX // 2:  # a storm of distinct floods: keep the newest half
                keep = list(self.seen.items())[-(self.MAX // 2):]
                self.seen = dict(keep)

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
        #: Told (address, takes them) when a host is added or removed (the fast path).
        self.changed: Callable[[str, bool], None] | None = None

    def add(self, addr: str) -> None:
        if addr not in self.addrs and len(self.addrs) < self.MAX:
            self.addrs.add(addr)
            if self.changed is not None:
                self.changed(addr, True)

    def discard(self, addr: str) -> None:
        if addr in self.addrs:
            self.addrs.discard(addr)
            if self.changed is not None:
                self.changed(addr, False)


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
