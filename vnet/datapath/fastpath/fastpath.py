"""vnetd's fast path: the tc programs of bpf/fastpath.bpf.c, loaded and kept in step.

vnetd stays the one owner of the tables; the fast path is a mirror of the part of
them the programs need (doc/fastpath.md): which MACs of each served vnet are local,
where each remote MAC lives and whether its host takes super-frames, and which tap
serves which vnet.  The tables tell it of every change (`MacMirror`), so the maps
never hold a MAC vnetd has forgotten or moved.  The programs refresh the time an
entry was last used; `refresh` carries those times back before vnetd sweeps, so a
MAC whose frames all take the fast path does not expire.

A vnet is served while it is a plain (security none) UDP vnet whose one attachment
is its tap (no ports, no socket endpoints: those are switched by vnetd).  Every
other vnet, and every frame the programs do not take, goes through vnetd as before.
"""
from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from pyroute2 import IPRoute

from vnet.datapath.fastpath import libbpf
from vnet.datapath.fastpath.libbpf import BPF_TC_EGRESS, BPF_TC_INGRESS, BpfObject
from vnet.host.netdev import LinkStack

log = logging.getLogger("vnetd")

#: The object `make -C bpf` builds into the package.
OBJECT = "fastpath.bpf.o"
#: Our tc filters: handle and priority on the tap's egress and the underlay's ingress.
TC_HANDLE = 0x1798
TC_PRIORITY = 1798
#: How long the decapsulating filter works after vnetd last said it is alive; the
#: daemon renews it every sweep (10 s), so a vnetd killed stops it within this.
ALIVE_FOR = 25.0
#: Stats slots (FP_MAX_VNETS in bpf/fastpath.h): vnets beyond it take the slow path.
MAX_VNETS = 1024

# bpf/fastpath.h, packed as the programs read them.
CONFIG = struct.Struct("<4sI2sBBIQ")    # addr, ifindex, port (network order), ttl, csum, super_max, alive
TAP = struct.Struct("<16sI")           # vid, slot
VNET = struct.Struct("<II")            # tap ifindex, slot
MAC_KEY = struct.Struct("<16s6s2x")    # vid, mac
REMOTE = struct.Struct("<4sIQ")        # addr, flags, seen (ns)
LOCAL = struct.Struct("<Q")            # seen (ns)
STATS = struct.Struct("<QQQQ")         # tx packets, tx bytes, rx packets, rx bytes
REMOTE_SUPER = 1

CSUM_LEAVE, CSUM_COMPLETE, CSUM_SLOW = 0, 1, 2
CSUM_MODES = {CSUM_LEAVE: "the underlay device", CSUM_COMPLETE: "the fast path",
              CSUM_SLOW: "vnetd (slow path)"}


def object_path() -> Path:
    return Path(str(resources.files("vnet.datapath.fastpath").joinpath(OBJECT)))


#: What reads the links of vnetd's namespace (vnet.host.netdev.link_stack).
Links = Callable[[], LinkStack]

#: Kinds whose packets go out of their lower device (IFLA_LINK), or their ports.
STACKED = ("vlan", "macvlan", "ipvlan", "macsec")
MASTERS = ("bridge", "bond", "team")


def csum_mode(device: str, links: LinkStack) -> int:
    """Who completes a partial inner checksum after the fast path sent the packet
    out of `device`.  A NIC (or the kernel's software fallback in front of one)
    completes it; a veth hands the packet to another stack as it is, so the fast
    path must (and then must not leave it to a NIC, which would complete it a second
    time, wrongly).  Devices stacked on others (VLAN, bridge, bond) are what their
    lower devices all are; anything else cannot be told, and such frames take vnetd.
    Asked of rtnetlink, not sysfs: vnetd may run in a namespace of its own."""
    by_index = {v[0]: (name, v) for name, v in links.items()}
    seen: set[str] = set()

    def mode(name: str) -> int:
        if name in seen or name not in links:
            return CSUM_SLOW
        seen.add(name)
        index, kind, lower, _master = links[name]
        if kind is None:
            return CSUM_LEAVE
        if kind == "veth":
            return CSUM_COMPLETE
        if kind in STACKED:
            return mode(by_index[lower][0]) if lower in by_index else CSUM_SLOW
        if kind in MASTERS:
            ports = {mode(n) for n, v in links.items() if v[3] == index}
            return ports.pop() if len(ports) == 1 else CSUM_SLOW
        return CSUM_SLOW

    return mode(device)


class RemoteMirror:
    """The VARP cache's mirror: where each remote MAC of a served vnet lives."""

    def __init__(self, fp: "FastPath", supers: set[str]) -> None:
        self.fp = fp
        self.supers = supers

    def set(self, vnet: bytes, mac: bytes, addr: str | None) -> None:
        if addr is not None:
            self.fp.remote_set(vnet, mac, addr, addr in self.supers)

    def delete(self, vnet: bytes, mac: bytes) -> None:
        self.fp.remote_del(vnet, mac)


class LocalMirror:
    """The vif table's mirror: which MACs of a served vnet are on this host."""

    def __init__(self, fp: "FastPath") -> None:
        self.fp = fp

    def set(self, vnet: bytes, mac: bytes, addr: str | None) -> None:
        self.fp.local_set(vnet, mac)

    def delete(self, vnet: bytes, mac: bytes) -> None:
        self.fp.local_del(vnet, mac)


class FastPath:
    """The loaded programs and their maps, attached to the underlay device; None of
    it is left behind by `close` (the clsact qdisc only if we made it and it is empty)."""

    def __init__(self, address_b: bytes, ifindex: int, device: str, port: int, ttl: int,
                 super_max: int, links: Links, path: Path | None = None) -> None:
        self.device = device
        self.links = links
        self.ifindex = ifindex
        path = path or object_path()
        if not path.exists():
            raise OSError(errno.ENOENT, f"{path} was not built (make -C bpf, as setup.sh does)")
        self.obj = BpfObject(str(path))
        try:
            self.config = self.obj.map("fp_config")
            self.taps = self.obj.map("fp_taps")
            self.vnets = self.obj.map("fp_vnets")
            self.remote = self.obj.map("fp_remote")
            self.local = self.obj.map("fp_local")
            self.stats = self.obj.map("fp_stats", per_cpu=True)
            self.encap_fd = self.obj.program_fd("vnet_encap")
            self.decap_fd = self.obj.program_fd("vnet_decap")
            self._config = [address_b, ifindex, port, ttl, csum_mode(device, links()), super_max]
            self.write_config(time.monotonic())
            self.made_qdisc = libbpf.tc_attach(ifindex, BPF_TC_INGRESS, self.decap_fd, TC_HANDLE, TC_PRIORITY)
        except OSError:
            self.obj.close()
            raise
        #: Served vnets: vid -> (tap ifindex, slot).
        self.served: dict[bytes, tuple[int, int]] = {}
        self.free_slots = list(range(MAX_VNETS - 1, -1, -1))
        #: What the maps hold, to refresh, update and remove without asking them.
        self.remotes: dict[tuple[bytes, bytes], tuple[str, int]] = {}
        self.locals: set[tuple[bytes, bytes]] = set()
        #: Frames a served vnet took through the fast path before it stopped being
        #: served, so its counters never go back.
        self.past: dict[bytes, tuple[int, int, int, int]] = {}

    @property
    def csum(self) -> int:
        return self._config[4]

    def write_config(self, now: float) -> None:
        """The config entry, alive for ALIVE_FOR from `now` (monotonic seconds)."""
        addr, ifindex, port, ttl, csum, super_max = self._config
        self.config.update(b"\0" * 4, CONFIG.pack(addr, ifindex, port.to_bytes(2, "big"), ttl, csum,
                                                  super_max, int((now + ALIVE_FOR) * 1e9)))

    def recheck_underlay(self, now: float) -> None:
        """After a link change: the underlay's devices may now complete checksums or not."""
        mode = csum_mode(self.device, self.links())
        if mode != self._config[4]:
            self._config[4] = mode
            self.write_config(now)
            log.warning("fast path: partial checksums now completed by %s", CSUM_MODES[mode])

    # ---- vnets -----------------------------------------------------------------------

    def serve(self, vid: bytes, tap_ifindex: int) -> bool:
        """Start serving a vnet through its tap; False when no slot is left."""
        if vid in self.served:
            return True
        if not self.free_slots:
            return False
        slot = self.free_slots.pop()
        self.stats.update(slot.to_bytes(4, "little"), bytes(self.stats.slot * self.stats.cpus))
        self.vnets.update(vid, VNET.pack(tap_ifindex, slot))
        self.taps.update(tap_ifindex.to_bytes(4, "little"), TAP.pack(vid, slot))
        try:
            libbpf.tc_attach(tap_ifindex, BPF_TC_EGRESS, self.encap_fd, TC_HANDLE, TC_PRIORITY)
        except OSError:
            self.vnets.delete(vid)
            self.taps.delete(tap_ifindex.to_bytes(4, "little"))
            self.free_slots.append(slot)
            raise
        self.served[vid] = (tap_ifindex, slot)
        return True

    def unserve(self, vid: bytes) -> None:
        """Stop serving a vnet: its frames go through vnetd from now on."""
        held = self.served.pop(vid, None)
        if held is None:
            return
        tap_ifindex, slot = held
        self.past[vid] = self.counters(vid, slot)
        libbpf.tc_detach(tap_ifindex, BPF_TC_EGRESS, TC_HANDLE, TC_PRIORITY)
        self.taps.delete(tap_ifindex.to_bytes(4, "little"))
        self.vnets.delete(vid)
        for key in [k for k in self.remotes if k[0] == vid]:
            self._remote_del(key)
        for key in [k for k in self.locals if k[0] == vid]:
            self._local_del(key)
        self.free_slots.append(slot)

    def forget(self, vid: bytes) -> None:
        """A vnet deleted: stop serving it and drop its counters."""
        self.unserve(vid)
        self.past.pop(vid, None)

    def counters(self, vid: bytes, slot: int | None = None) -> tuple[int, int, int, int]:
        """Frames and bytes the fast path sent and delivered for a vnet, ever."""
        base = self.past.get(vid, (0, 0, 0, 0))
        if slot is None:
            held = self.served.get(vid)
            if held is None:
                return base
            slot = held[1]
        total = list(base)
        for raw in self.stats.per_cpu(slot.to_bytes(4, "little")):
            for i, n in enumerate(STATS.unpack(raw)):
                total[i] += n
        return total[0], total[1], total[2], total[3]

    # ---- the MAC mirror: told by the tables of every change -------------------------

    def remote_set(self, vid: bytes, mac: bytes, addr: str, super_ok: bool) -> None:
        if vid not in self.served:
            return
        key = (vid, mac)
        flags = REMOTE_SUPER if super_ok else 0
        if self.remotes.get(key) == (addr, flags):
            return
        try:
            self.remote.update(MAC_KEY.pack(vid, mac), REMOTE.pack(socket.inet_aton(addr), flags, 0))
        except OSError as e:  # full: the MAC takes the slow path
            log.debug("fast path: %s", e)
            self._remote_del(key)
            return
        self.remotes[key] = (addr, flags)

    def remote_del(self, vid: bytes, mac: bytes) -> None:
        if (vid, mac) in self.remotes:
            self._remote_del((vid, mac))

    def _remote_del(self, key: tuple[bytes, bytes]) -> None:
        self.remotes.pop(key, None)
        self.remote.delete(MAC_KEY.pack(*key))

    def super_changed(self, addr: str, super_ok: bool) -> None:
        """A host now takes super-frames, or no longer: its MACs' entries say so."""
        for (vid, mac), (a, _flags) in list(self.remotes.items()):
            if a == addr:
                self.remote_set(vid, mac, addr, super_ok)

    def local_set(self, vid: bytes, mac: bytes) -> None:
        if vid not in self.served or (vid, mac) in self.locals:
            return
        try:
            self.local.update(MAC_KEY.pack(vid, mac), LOCAL.pack(0))
        except OSError as e:
            log.debug("fast path: %s", e)
            return
        self.locals.add((vid, mac))

    def local_del(self, vid: bytes, mac: bytes) -> None:
        if (vid, mac) in self.locals:
            self._local_del((vid, mac))

    def _local_del(self, key: tuple[bytes, bytes]) -> None:
        self.locals.discard(key)
        self.local.delete(MAC_KEY.pack(*key))

    def last_used(self, vid: bytes, mac: bytes, remote: bool) -> float | None:
        """When the fast path last used an entry (monotonic seconds), or None."""
        table, known = (self.remote, self.remotes) if remote else (self.local, self.locals)
        if (vid, mac) not in known:
            return None
        raw = table.lookup(MAC_KEY.pack(vid, mac))
        if raw is None:
            return None
        seen = (REMOTE.unpack_from(raw)[2] if remote else LOCAL.unpack_from(raw)[0])
        return seen / 1e9 if seen else None

    # ---- the daemon's life ----------------------------------------------------------

    def close(self) -> None:
        """Detach every filter and close the object (the maps go with it)."""
        for vid in list(self.served):
            self.unserve(vid)
        libbpf.tc_detach(self.ifindex, BPF_TC_INGRESS, TC_HANDLE, TC_PRIORITY)
        if self.made_qdisc:
            _remove_idle_clsact(self.ifindex)
        self.obj.close()


def _remove_idle_clsact(ifindex: int) -> None:
    """The clsact qdisc we added to the underlay, if no filter is left in it."""
    try:
        with IPRoute() as ipr:
            for parent in (0xFFFFFFF2, 0xFFFFFFF3):  # ingress, egress of clsact
                if ipr.get_filters(index=ifindex, parent=parent):
                    return
            ipr.tc("del", "clsact", ifindex)
    except Exception as e:  # noqa: BLE001 - leaving an empty qdisc is harmless
        log.debug("fast path: clsact left on ifindex %d: %s", ifindex, e)


def probe_error(e: OSError) -> str:
    """One line on why the fast path cannot run here."""
    if e.errno in (errno.EPERM, errno.EACCES):
        return f"{e.strerror or e} (BPF needs CAP_BPF and CAP_NET_ADMIN, or root)"
    return str(e.strerror or e)
