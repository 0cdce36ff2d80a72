"""Transmit: frames read from a vnet's tap, onto the underlay.

Per frame: learn the source MAC as local (announcing it when it is new here, so a VM
that moved is found at once), seal it once on a secure vnet, then send it to the
host the VARP cache names, or flood it: one copy to the group and one VFWD copy to
each peer (doc/wire-format.md).  The same sending helpers serve receive, which seals
VARP replies and relays the group's packets to the peers.

This is the per-packet path: prebuilt headers, bound methods and locals, no logging.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from vnet.control.events import LOCAL
from vnet.datapath.vnetd.attach import Attachment
from vnet.datapath.vnetd.loop import Clock
from vnet.datapath.vnetd.offload import PLAIN_FRAME_MAX, VNET_HDR_LEN, finish_checksum, segment
from vnet.datapath.vnetd.tables import MAX_VNET_MACS, Tables
from vnet.datapath.vnetd.underlay import Sender, Underlay
from vnet.datapath.vnetd.vnets import Vnet
from vnet.host.netdev import SUPER_FRAME_MAX
from vnet.wire import formats as wire
from vnet.wire import seal
from vnet.wire.stats import (
    C_ANNOUNCES_SENT,
    C_FLOODS,
    C_UNKNOWN_UNICAST_FLOODS,
    D_OVERSIZE,
    D_PAUSE_FRAME,
    D_SEND_ERROR,
    D_TABLE_FULL,
    D_TAP_RUNT,
    D_TAP_WRITE_ERROR,
)

ZERO_ADDR = b"\0\0\0\0"
#: The last counter of a session (doc/security.md): the next message starts a new one.
COUNTER_MAX = (1 << 64) - 1
#: An 802.3x pause frame: to 01:80:c2:00:00:01 (the tail after its first byte, 01),
#: ethertype 0x8808.  The one frame a port does not carry across (doc/ports.md).
PAUSE_TAIL = b"\x80\xc2\x00\x00\x01"


class Transmit:
    """The tap -> network rules, and the sends every rule makes.

    `udp` and `etherip` are the Senders for UDP port `here.port` and raw protocol 97.
    `session` and `counter` are this host's one sealing session and counter
    (doc/security.md, "Sessions"), for every secure vnet and key: a fresh random
    session at every start of the process (tests may give one), the counter from 0."""

    def __init__(self, here: Underlay, udp: Sender, etherip: Sender, tables: Tables, clock: Clock,
                 session: bytes | None = None, offload: bool = True, etherip_frag: Sender | None = None,
                 counter: int = 0) -> None:
        self.here = here
        self.address = here.address
        self.address_b = here.address_b
        self.port = here.port
        self.send_udp = udp.sendmsg
        self.send_etherip = etherip.sendmsg
        # Raw EtherIP of a vnet with an MTU above the default: DF clear, so the
        # host fragments what does not fit (doc/ports.md, "MTU").
        self.send_etherip_frag = (etherip_frag or etherip).sendmsg
        self.clock = clock
        self.tables = tables
        self.mac_watchers = tables.mac_watchers
        self.cache = tables.varp
        self.vifs = tables.vifs
        self.peers = tables.peers
        self.counts = tables.counts
        self.drops = tables.drops
        self.session = seal.new_session() if session is None else session
        self.counter = counter
        self.supers = tables.supers.addrs
        # What our announces say after their 43 bytes: that super-frames are welcome
        # here, unless this host runs without them (vnetd --no-offload).
        self.varp_ext = wire.VARP_EXT_SUPER if offload else b""

    def from_tap(self, v: Vnet, frames: Iterable[bytes], a: Attachment | None = None) -> None:
        """A batch of frames read from one of v's local attachments `a` (its tap if
        None), each behind its virtio-net header.  With several attachments, frames
        are switched between them first (doc/ports.md): a pause frame is dropped, a
        frame to a local MAC goes to its attachment only, any other to every other
        attachment and on to the network as with one."""
        vid = v.vid
        vifs = self.vifs.entries
        cache = self.cache.entries
        drops = self.drops
        now = self.clock.now
        if v.switching:
            frames = self.switch(v, a or v.tap, frames)
        for frame in frames:
            # A super-frame keeps its partial checksum (the receiver re-segments it);
            # a plain frame must leave here complete, a full-size 802.1Q one (GSO
            # type none, up to 1518 bytes) too.
            raw = frame
            if frame[0] & 1 and (len(frame) <= PLAIN_FRAME_MAX + VNET_HDR_LEN or not frame[1]):
                frame = finish_checksum(frame)
            else:
                frame = memoryview(frame)[VNET_HDR_LEN:]
            if len(frame) < wire.ETH_HEADER_LEN:
                drops[D_TAP_RUNT] += 1
                continue
            v.tx_packets += 1
            v.tx_bytes += len(frame)
            src = bytes(frame[6:12])
            if not src[0] & 1:
                key = (vid, src)
                if key in vifs:
                    vifs[key] = now
                else:
                    self.local_mac(v, src, a or v.tap, now)
            entry = None if frame[0] & 1 else cache.get((vid, bytes(frame[0:6])))
            if (len(frame) > PLAIN_FRAME_MAX and raw[1] and not v.level
                    and (entry is None or entry.addr not in self.supers or len(frame) > SUPER_FRAME_MAX)):
                # A super-frame for a host not known to take one, or for the group,
                # or too long for one datagram (a port's GSO packet may be): its
                # segments, as ordinary frames (doc/wire-format.md).
                segs = segment(raw)
                if segs is not None:
                    if entry is None:
                        self.flood_segments(v, segs, not frame[0] & 1)
                    else:
                        self.unicast_segments(v, segs, entry.addr)
                    continue
            # Sealed once, whatever number of copies go out (doc/security.md).
            parts = self.seal(v, seal.TYPE_FRAME, frame) if v.level else (v.prefix, frame)
            if frame[0] & 1:
                self.flood(v, parts)
                continue
            if entry is None:
                self.counts[C_UNKNOWN_UNICAST_FLOODS] += 1
                self.flood(v, parts)
                continue
            try:
                if v.udp:
                    self.send_udp(parts, (), 0, (entry.addr, self.port))
                elif v.fragments:
                    self.send_etherip_frag(parts, (), 0, (entry.addr, 0))
                else:
                    self.send_etherip(parts, (), 0, (entry.addr, 0))
            except OSError:
                drops[D_SEND_ERROR] += 1

    def switch(self, v: Vnet, a: Attachment, frames: Iterable) -> Iterator:
        """Local switching: the frames of the batch that go on to the network."""
        macs = v.macs
        drops = self.drops
        cache = self.cache.entries
        others = [o for o in v.attachments if o is not a]
        for raw in frames:
            n = len(raw) - VNET_HDR_LEN
            if n < wire.ETH_HEADER_LEN:
                yield raw  # counted as a runt there
                continue
            if raw[10] == 1 and raw[22] == 0x88 and raw[23] == 0x08 and raw[11:16] == PAUSE_TAIL:
                drops[D_PAUSE_FRAME] += 1
                continue
            a.rx_packets += 1
            a.rx_bytes += n
            src = bytes(raw[16:22])
            # A local MAC's attachment is kept beside its vif entry and goes with it
            # (Vnetd._sweep): at most as many as the vnet's share of the vif table.
            if not src[0] & 1 and macs.get(src) is not a and (src in macs or len(macs) < MAX_VNET_MACS):
                macs[src] = a
            if not raw[10] & 1:
                dst = bytes(raw[10:16])
                owner = macs.get(dst)
                if owner is None and (v.vid, dst) in cache:
                    yield raw  # on another host: not for the other attachments
                    continue
                if owner is not None:
                    if owner is not a:
                        try:
                            owner.write_raw(raw)
                        except OSError:
                            drops[D_TAP_WRITE_ERROR] += 1
                    # Learned as a source here, so it counts as local (and announced).
                    v.tx_packets += 1
                    v.tx_bytes += n
                    if not src[0] & 1:
                        key = (v.vid, src)
                        if key in self.vifs.entries:
                            self.vifs.entries[key] = self.clock.now
                        else:
                            self.local_mac(v, src, a, self.clock.now)
                    continue
            for o in others:
                try:
                    o.write_raw(raw)
                except OSError:
                    drops[D_TAP_WRITE_ERROR] += 1
            yield raw

    def flood_segments(self, v: Vnet, segs: list, unknown: bool) -> None:
        """The segments of a super-frame for the group: each one a flood."""
        if unknown:
            self.counts[C_UNKNOWN_UNICAST_FLOODS] += len(segs)
        for seg in segs:
            self.flood(v, (v.prefix, seg))

    def unicast_segments(self, v: Vnet, segs: list, addr: str) -> None:
        """The segments of a super-frame for a host that takes ordinary frames only."""
        dst = (addr, self.port)
        try:
            for seg in segs:
                self.send_udp((v.prefix, seg), (), 0, dst)
        except OSError:
            self.drops[D_SEND_ERROR] += 1

    def seal(self, v: Vnet, msg_type: int, body) -> tuple:
        """Body sealed with the vnet's send key in this host's session, numbered by its
        one counter; a counter that would pass 2^64-1 starts a new session."""
        self.counter += 1
        if self.counter > COUNTER_MAX:
            self.session, self.counter = seal.new_session(), 1
        return seal.seal(v.cipher_to_send(self.session), v.level, msg_type, v.vid, v.send_id,
                         self.address_b, self.session, self.counter, body)

    def control(self, v: Vnet, msg_type: int, value: bytes, addr: str) -> None:
        """A challenge or an answer (16 bytes) of vnet v to `addr`: always by UDP to the
        port, also on a raw EtherIP vnet, as VARP replies.  Raises OSError."""
        self.send_udp(self.seal(v, msg_type, value), (), 0, (addr, self.port))

    def flood(self, v: Vnet, parts: tuple) -> None:
        """One copy to the vnet's group, one VFWD copy to each peer (reference 4.6)."""
        self.counts[C_FLOODS] += 1
        n = sum(map(len, parts))
        if v.udp:
            self.multicast_udp(parts, n, v)
            return
        group, group_b = (v.group, v.group_b) if v.group else (self.here.mcaddr, self.here.mcaddr_b)
        try:
            (self.send_etherip_frag if v.fragments else self.send_etherip)(parts, (), 0, (group, 0))
        except OSError:
            self.drops[D_SEND_ERROR] += 1
        if self.peers:
            hdr = wire.ipv4_header(ZERO_ADDR, group_b, wire.IPPROTO_ETHERIP, n,
                                   df=not v.fragments, checksum=False)
            self.to_peers((wire.VFWD_HEADER, hdr) + parts, None)

    def multicast_udp(self, parts: tuple, length: int, v: Vnet) -> None:
        """A UDP payload of `length` bytes for vnet v to its group (its own, else the
        shared one), and as VFWD to each peer."""
        group, group_b = (v.group, v.group_b) if v.group else (self.here.mcaddr, self.here.mcaddr_b)
        try:
            self.send_udp(parts, (), 0, (group, self.port))
        except OSError:
            self.drops[D_SEND_ERROR] += 1
        if self.peers:
            inner = wire.vfwd_inner_udp(ZERO_ADDR, group_b, length)
            self.to_peers((wire.VFWD_HEADER, inner) + parts, None)

    def to_peers(self, parts: tuple, origin: str | None) -> None:
        """A VFWD packet to every peer but the one it came from; to none, counted
        `oversize`, if one datagram cannot carry it."""
        if sum(map(len, parts)) > wire.VFWD_MAX_LEN:
            self.drops[D_OVERSIZE] += 1
            return
        for peer in self.peers.values():
            if peer.addr == origin:
                continue
            try:
                self.send_udp(parts, (), 0, (peer.addr, peer.port))
                peer.tx_packets += 1
            except OSError:
                self.drops[D_SEND_ERROR] += 1

    def varp_parts(self, v: Vnet, mac: bytes) -> tuple:
        """An announce that `mac` of vnet v lives here, sealed on a secure vnet."""
        msg = wire.pack_varp(wire.VARP_ANNOUNCE, v.vid, mac, self.address) + self.varp_ext
        return self.seal(v, seal.TYPE_VARP, msg) if v.level else (msg,)

    def local_mac(self, v: Vnet, mac: bytes, a: Attachment, now: float) -> None:
        """A source MAC not in the vif table: recorded and announced, or, when its vnet
        has no room, counted `table-full` (the frame still goes on, as in the module;
        the MAC is neither local here nor announced until room comes back)."""
        if self.vifs.add(v.vid, mac, now, not v.level):
            self.announce(v, mac, a)
        else:
            self.drops[D_TABLE_FULL] += 1

    def announce(self, v: Vnet, mac: bytes, a: Attachment) -> None:
        """A MAC seen here for the first time, on attachment `a`: claim it, so a moved
        VM is found at once."""
        was = self.cache.forget(v.vid, mac)
        if self.mac_watchers:
            self.tables.mac_changed(v.vid, mac, was, f"{LOCAL}:{a.name}")
        self.counts[C_ANNOUNCES_SENT] += 1
        parts = self.varp_parts(v, mac)
        self.multicast_udp(parts, sum(map(len, parts)), v)
