"""Receive: packets from the underlay, checked, learned from and written to a vnet's tap.

The rules of doc/wire-format.md ("Receive rules") and doc/security.md ("Receive
rules"), in the documented order, each drop counted under its reason.  Two entry
points: `from_udp` (port 1798: the unicast socket, and with the arrival TTL the
group's socket) and `from_raw` (IP protocol 97, unicast or the group).  They take a
packet already read, so tests drive them with crafted bytes; the daemon's socket
handlers call them.

This is the per-packet path: slicing, dict lookups and struct codecs, no logging.
"""
from __future__ import annotations

import hmac
import os
import socket

from vnet.control.events import LOCAL
from vnet.datapath.vnetd.loop import Clock
from vnet.datapath.vnetd.offload import ORIGINAL_FRAME_MAX, ZERO_HDR, gso_header
from vnet.datapath.vnetd.tables import Tables
from vnet.datapath.vnetd.transmit import ZERO_ADDR, Transmit
from vnet.datapath.vnetd.underlay import Sender, Underlay
from vnet.datapath.vnetd.vnets import SenderEntry, Vnet
from vnet.wire import formats as wire
from vnet.wire import seal
from vnet.wire.stats import (
    C_ANNOUNCES_RECEIVED,
    C_ANNOUNCES_SENT,
    C_ANSWERS_SENT,
    C_CHALLENGES_SENT,
    C_ETHERIP_RECEIVED,
    C_FORWARDS_RECEIVED,
    C_SESSIONS_CONFIRMED,
    C_UDP_RECEIVED,
    C_VARP_REQUESTS,
    D_BAD_ANSWER,
    D_BAD_FAMILY,
    D_BAD_FORWARD,
    D_BAD_MESSAGE_ID,
    D_BAD_OPCODE,
    D_BAD_SENDER,
    D_BAD_SEAL,
    D_BAD_SOURCE_MAC,
    D_BAD_TAG,
    D_BAD_VERSION,
    D_DUPLICATE,
    D_HOP_LIMIT,
    D_NOT_A_PEER,
    D_OLD_SEAL,
    D_OTHER_GROUP,
    D_OWN_PACKET,
    D_REPLAY,
    D_SECURITY_MISMATCH,
    D_SEND_ERROR,
    D_SHORT,
    D_TABLE_FULL,
    D_TAP_WRITE_ERROR,
    D_UNCONFIRMED,
    D_UNKNOWN_KEY,
    D_UNKNOWN_VNET,
    D_UNPROTECTED,
)

#: Sender entries (session, replay window, challenge) a secure vnet keeps, one per
#: sending host.  Only a key holder can add one, so this bounds memory against a
#: misbehaving member, not the public.
MAX_SENDERS = 1024
#: Seconds before a sender whose session is unconfirmed is challenged again.
CHALLENGE_EVERY = 1.0

#: The sender rule (doc/security.md), per packet one index and one set lookup: first
#: bytes of the addresses no host can have (0/8, loopback, multicast), and the
#: broadcast address.  Our own addresses are the other refused senders.
NO_HOST_FIRST = bytes(1 if b in (0, 127) or 224 <= b < 240 else 0 for b in range(256))
BROADCAST = b"\xff\xff\xff\xff"
#: IP sources no other host can send from (besides our own addresses): ignored
#: silently, as the module does.  Only a local process can send from loopback.
QUIET_PREFIXES = ("127.", "0.")
#: The hop budget of a VFWD relay from the original forwarder, whose inner header has
#: no TTL: one re-send on our LAN with TTL 1, which no router forwards.
BARE_RELAY_TTL = 2


class Receive:
    """The network -> tap rules.  `ip` is the Sender for raw IP packets with our own
    header (a VFWD's re-send on the LAN); other sends go through `tx`."""

    def __init__(self, here: Underlay, ip: Sender, tables: Tables, clock: Clock, tx: Transmit) -> None:
        self.here = here
        self.self_addrs = here.self_addrs
        self.own = frozenset(socket.inet_aton(a) for a in here.self_addrs)
        self.port = here.port
        self.send_ip = ip.sendmsg
        self.clock = clock
        self.tx = tx
        self.by_id = tables.vnets
        self.cache = tables.varp
        self.vifs = tables.vifs
        self.peers = tables.peers
        self.floods = tables.floods
        self.supers = tables.supers
        self.counts = tables.counts
        self.drops = tables.drops

    # ---- from the sockets ------------------------------------------------------------

    def from_udp(self, pkt: memoryview, src: str, group_ttl: int | None = None,
                 group_b: bytes | None = None) -> None:
        """UDP to port 1798.  Unicast to us (group_ttl None): frames for our MACs, VARP
        replies, peers' VFWD packets.  Multicast to a group of ours (group_b, else the
        shared one), which arrived with IP TTL group_ttl: relayed to the peers (keeping
        its TTL budget), then handled."""
        if src in self.self_addrs or src.startswith(QUIET_PREFIXES):
            return
        self.counts[C_UDP_RECEIVED] += 1
        if len(pkt) < wire.VNET_MSG_HEADER_LEN:
            self.drops[D_SHORT] += 1
            return
        if group_ttl is None:
            self.dispatch(pkt, src, vfwd_ok=True)
            return
        if self.duplicate(src, pkt):
            self.drops[D_DUPLICATE] += 1
            return
        if self.peers and not (pkt[0] == 0 and pkt[1] == wire.MSG_VFWD):
            inner = wire.vfwd_inner_udp(socket.inet_aton(src), group_b or self.here.mcaddr_b, len(pkt),
                                        ttl=group_ttl)
            self.tx.to_peers((wire.VFWD_HEADER, inner, pkt), src)
        self.dispatch(pkt, src, vfwd_ok=False)

    def from_raw(self, ip: memoryview, src: str) -> None:
        """Raw EtherIP (protocol 97), IP header included: unicast to us, or multicast
        to a group of ours (the shared one, or a vnet's own)."""
        if src in self.self_addrs or src.startswith(QUIET_PREFIXES) or len(ip) < wire.IPV4_HEADER_LEN:
            return
        self.counts[C_ETHERIP_RECEIVED] += 1
        pkt = ip[(ip[0] & 0x0F) * 4:]
        if ip[16] & 0xF0 == 0xE0:
            group_b = bytes(ip[16:20])
            if group_b not in self.here.groups_b:
                self.drops[D_OTHER_GROUP] += 1
                return
            if self.duplicate(src, pkt):
                self.drops[D_DUPLICATE] += 1
                return
            if self.peers:  # keeping its TTL budget, as UDP relays do
                hdr = wire.ipv4_header(socket.inet_aton(src), group_b, wire.IPPROTO_ETHERIP,
                                       len(pkt), ttl=ip[8], df=True, checksum=False)
                self.tx.to_peers((wire.VFWD_HEADER, hdr, pkt), src)
        self.raw(pkt, src)

    def duplicate(self, src: str, payload) -> bool:
        """The flood filter (loop protection): only a relayed copy can be a duplicate."""
        if self.here.relayed(src):
            return not self.floods.first_time(src, payload, self.clock.now)
        self.floods.record(src, payload, self.clock.now)
        return False

    # ---- by message ------------------------------------------------------------------

    def dispatch(self, pkt: memoryview, src: str, vfwd_ok: bool) -> None:
        """A UDP payload, by its message id; VFWD only by unicast, never nested."""
        msg = pkt[0] << 8 | pkt[1]
        if msg == wire.MSG_VUDP:
            self.etherip(pkt[wire.VNET_MSG_HEADER_LEN:], src)
        elif msg == seal.MSG_SEALED:
            self.sealed(pkt, raw=False)
        elif msg == seal.MSG_OLD_SEALED:
            self.drops[D_OLD_SEAL] += 1
        elif msg == wire.MSG_VARP:
            self.varp(pkt, src)
        elif msg == wire.MSG_VFWD and vfwd_ok:
            self.vfwd(pkt, src)
        else:
            self.drops[D_BAD_MESSAGE_ID] += 1

    def raw(self, pkt: memoryview, src: str) -> None:
        """An IP protocol 97 payload: a sealed message (00 05), one of the format before
        sessions (00 04), or plain EtherIP."""
        if len(pkt) > 1 and pkt[0] == 0 and pkt[1] == seal.MSG_SEALED:
            self.sealed(pkt, raw=True)
        elif len(pkt) > 1 and pkt[0] == 0 and pkt[1] == seal.MSG_OLD_SEALED:
            self.drops[D_OLD_SEAL] += 1
        else:
            self.etherip(pkt, src)

    def etherip(self, pkt: memoryview, src: str) -> None:
        """Plain EtherIP: a raw payload, or a VUDP packet after its 4-byte header."""
        if len(pkt) < wire.ETHERIP_HEADER_LEN + wire.ETH_HEADER_LEN:
            self.drops[D_SHORT] += 1
            return
        if not wire.etherip_version_ok(pkt[0], pkt[1]):
            self.drops[D_BAD_VERSION] += 1
            return
        v = self.plain_vnet(pkt[2:18])
        if v is not None:
            self.deliver(v, pkt[wire.ETHERIP_HEADER_LEN:], src)

    def plain_vnet(self, vid) -> Vnet | None:
        """The vnet an unsealed frame or VARP message names, or None with the drop
        counted: unknown, or secure and so taking sealed messages only."""
        v = self.by_id.get(bytes(vid))
        if v is None:
            self.drops[D_UNKNOWN_VNET] += 1
        elif v.level:
            self.drops[D_UNPROTECTED] += 1
            return None
        return v

    def sealed(self, pkt: memoryview, raw: bool) -> None:
        """A sealed message (doc/security.md, "Receive rules"): checked in the
        documented order, and nothing is learned, answered or delivered unless every
        check passes.  Each message ends in exactly one count: a drop reason, a frame
        or VARP message handled, `answers-sent` or `sessions-confirmed`."""
        if len(pkt) < seal.OVERHEAD:
            self.drops[D_SHORT] += 1
            return
        _id, mtype, level, vid, key_id, sender, session, counter = seal.HEADER.unpack_from(pkt)
        v = self.by_id.get(vid)
        if v is None:
            self.drops[D_UNKNOWN_VNET] += 1
            return
        if level != v.level or not level:  # a (security none) vnet takes no sealed message
            self.drops[D_SECURITY_MISMATCH] += 1
            return
        secret = v.secrets.get(key_id)
        if secret is None:
            self.drops[D_UNKNOWN_KEY] += 1
            return
        if self.refused_sender(sender):  # we keep no entry for ourselves
            return
        entry = v.senders.get(sender)
        data = mtype == seal.TYPE_FRAME or mtype == seal.TYPE_VARP
        confirmed = entry is not None and entry.session == session
        if data and confirmed and not entry.window.fresh(counter):
            self.drops[D_REPLAY] += 1
            return
        cipher = None if entry is None else entry.ciphers.get((key_id, session))
        cached = cipher is not None
        if not cached:  # a session new to us: one HChaCha20, kept once the tag verified
            cipher = seal.aead(secret, session)
        try:
            body = seal.unseal(cipher, level, pkt)
        except seal.InvalidTag:
            self.drops[D_BAD_TAG] += 1
            return
        if mtype == seal.TYPE_FRAME:
            ok = len(body) >= wire.ETH_HEADER_LEN
        elif mtype == seal.TYPE_VARP:
            ok = not raw and len(body) >= wire.VARP_LEN and body[4:20] == vid
        else:
            ok = (mtype == seal.TYPE_CHALLENGE or mtype == seal.TYPE_ANSWER) and not raw \
                and len(body) == seal.CHALLENGE_LEN
        if not ok:
            self.drops[D_BAD_SEAL] += 1
            return
        if not data:
            if mtype == seal.TYPE_CHALLENGE:
                self.answer(v, bytes(body), sender)
            else:
                self.answered(v, entry, bytes(body), key_id, session, counter, cipher)
            return
        if not confirmed:
            self.unconfirmed(v, entry, sender, key_id, session, cipher)
            return
        if not cached:
            entry.keep_cipher(key_id, session, cipher)
        entry.window.record(counter)
        src = socket.inet_ntoa(sender)
        if mtype == seal.TYPE_FRAME:
            self.deliver(v, body, src)
        else:
            self.varp_message(v, memoryview(body), src)

    def answer(self, v: Vnet, value: bytes, sender: bytes) -> None:
        """A challenge: answered with its value in our session (no entry needed; a
        replayed one is answered again, which is harmless)."""
        try:
            self.tx.control(v, seal.TYPE_ANSWER, value, socket.inet_ntoa(sender))
        except OSError:
            self.drops[D_SEND_ERROR] += 1
            return
        self.counts[C_ANSWERS_SENT] += 1

    def answered(self, v: Vnet, entry: SenderEntry | None, value: bytes, key_id: int,
                 session: bytes, counter: int, cipher) -> None:
        """An answer: the session it is sealed in is confirmed if it carries the
        challenge we wait for, with nothing up to its counter ever accepted."""
        if entry is None or entry.challenge is None or not hmac.compare_digest(entry.challenge, value):
            self.drops[D_BAD_ANSWER] += 1
            return
        entry.confirm(session, counter)
        entry.keep_cipher(key_id, session, cipher)
        self.counts[C_SESSIONS_CONFIRMED] += 1

    def unconfirmed(self, v: Vnet, entry: SenderEntry | None, sender: bytes, key_id: int,
                    session: bytes, cipher) -> None:
        """A frame or VARP message of a session not (yet) confirmed: dropped, and its
        sender challenged unless a challenge is on its way (at most one a second)."""
        now = self.clock.now
        if entry is None:
            if len(v.senders) >= MAX_SENDERS:
                self.drops[D_REPLAY] += 1  # no room to remember it: refuse, never forget one
                return
            entry = v.senders[sender] = SenderEntry()
        elif entry.challenge is not None and now - entry.sent < CHALLENGE_EVERY:
            self.drops[D_UNCONFIRMED] += 1
            return
        self.drops[D_UNCONFIRMED] += 1
        entry.keep_cipher(key_id, session, cipher)  # its answer comes in this session
        entry.challenge = os.urandom(seal.CHALLENGE_LEN)
        entry.sent = now
        try:
            self.tx.control(v, seal.TYPE_CHALLENGE, entry.challenge, socket.inet_ntoa(sender))
        except OSError:  # the packet is counted (unconfirmed); tried again a second later
            return
        self.counts[C_CHALLENGES_SENT] += 1

    def refused_sender(self, addr: bytes) -> bool:
        """The sender rule (doc/security.md): a message that names as its sender (sealed
        header, VFWD origin, announced address) this host itself or an address no host
        can have is counted and refused.  Our own sealed floods sent back to us would
        verify, and would put our own VMs at our own address."""
        if NO_HOST_FIRST[addr[0]] or addr == BROADCAST:
            self.drops[D_BAD_SENDER] += 1
            return True
        if addr in self.own:
            self.drops[D_OWN_PACKET] += 1
            return True
        return False

    def deliver(self, v: Vnet, frame, src: str) -> None:
        """Learn where the frame's source lives and write the frame to the vnet's tap."""
        smac = bytes(frame[6:12])
        if smac[0] & 1:
            self.drops[D_BAD_SOURCE_MAC] += 1
            return
        if not self.cache.learn(v.vid, smac, src, self.clock.now, None, not v.level):
            self.drops[D_TABLE_FULL] += 1  # delivered all the same, as the module does
        if len(frame) > ORIGINAL_FRAME_MAX:  # only a host that takes super-frames sends one
            self.supers.add(src)
        hdr = ZERO_HDR if len(frame) <= v.plain_max else gso_header(frame, v.mtu)
        if v.switching:
            self.to_attachments(v, hdr, frame, smac)
        else:
            try:
                os.writev(v.fd, (hdr, frame))
            except OSError:
                self.drops[D_TAP_WRITE_ERROR] += 1
                return
        v.rx_packets += 1
        v.rx_bytes += len(frame)

    def to_attachments(self, v: Vnet, hdr: bytes, frame, smac: bytes) -> None:
        """A frame from the network for a vnet with several local attachments: to the
        one its destination MAC was seen on, else to all (doc/ports.md)."""
        macs = v.macs
        macs.pop(smac, None)  # heard from the network: it is not local (any more)
        owner = None if frame[0] & 1 else macs.get(bytes(frame[0:6]))
        for a in (owner,) if owner is not None else v.attachments:
            try:
                a.write(hdr, frame)
            except OSError:
                self.drops[D_TAP_WRITE_ERROR] += 1

    def varp(self, pkt: memoryview, src: str) -> None:
        """A plain VARP message."""
        if len(pkt) < wire.VARP_LEN:
            self.drops[D_SHORT] += 1
            return
        v = self.plain_vnet(pkt[4:20])
        if v is not None:
            self.varp_message(v, pkt, src)

    def varp_message(self, v: Vnet, pkt, src: str) -> None:
        """A VARP message for vnet v that passed its checks (plain, or unsealed): answer
        a request for a local vif; learn an announce's address, unless the sender rule
        refuses it."""
        op, vid, vmac, family, addr16 = wire.unpack_varp(pkt)
        if op == wire.VARP_REQUEST:
            self.counts[C_VARP_REQUESTS] += 1
            if self.vifs.has(vid, vmac):
                try:
                    self.tx.send_udp(self.tx.varp_parts(v, vmac), (), 0, (src, self.port))
                    self.counts[C_ANNOUNCES_SENT] += 1
                except OSError:
                    self.drops[D_SEND_ERROR] += 1
        elif op == wire.VARP_ANNOUNCE:
            if family != wire.AF_INET_VARP:
                self.drops[D_BAD_FAMILY] += 1
                return
            addr_b = addr16[:4]
            if self.refused_sender(addr_b):
                return
            addr = socket.inet_ntoa(addr_b)
            self.counts[C_ANNOUNCES_RECEIVED] += 1
            if wire.varp_accepts_super(pkt):
                self.supers.add(addr)
            else:
                self.supers.discard(addr)
            was_local = self.vifs.remove(vid, vmac)  # it lives elsewhere now
            if not self.cache.learn(vid, vmac, addr, self.clock.now, LOCAL if was_local else None, not v.level):
                self.drops[D_TABLE_FULL] += 1
        else:
            self.drops[D_BAD_OPCODE] += 1

    def vfwd(self, pkt: memoryview, src: str) -> None:
        """A multicast packet relayed by a peer (reference section 5): handled here as
        if multicast by its origin, then re-sent on our LAN with one hop less."""
        peer = self.peers.get(src)
        if peer is None:
            self.drops[D_NOT_A_PEER] += 1
            return
        peer.rx_packets += 1
        inner = pkt[wire.VNET_MSG_HEADER_LEN:]
        if len(inner) < wire.IPV4_HEADER_LEN:
            self.drops[D_BAD_FORWARD] += 1
            return
        if inner[0] == 0 and inner[2] == 0 and inner[3] == 0:
            # The original forwarder's relay: only protocol, source and destination
            # are filled in.  The lengths come from the datagram, as the original
            # receiver takes them; it carries no hop budget, so it is re-sent on our
            # LAN with TTL 1 (wire-format.md, "VFWD handling").
            ihl, total, ttl, bare = wire.IPV4_HEADER_LEN, len(inner), BARE_RELAY_TTL, True
        elif inner[0] >> 4 != 4:
            self.drops[D_BAD_FORWARD] += 1
            return
        else:
            ihl = (inner[0] & 0x0F) * 4
            total = inner[2] << 8 | inner[3]
            ttl, bare = inner[8], False
        proto = inner[9]
        if ihl < wire.IPV4_HEADER_LEN or total < ihl or total > len(inner) or inner[16] & 0xF0 != 0xE0:
            self.drops[D_BAD_FORWARD] += 1
            return
        origin_b = bytes(inner[12:16])
        if origin_b == ZERO_ADDR:
            origin_b = socket.inet_aton(src)
        if self.refused_sender(origin_b):
            return
        origin = socket.inet_ntoa(origin_b)
        body = inner[ihl:total]
        if proto == wire.IPPROTO_UDP:
            if len(body) < wire.UDP_HEADER_LEN + wire.VNET_MSG_HEADER_LEN:
                self.drops[D_BAD_FORWARD] += 1
                return
            payload = body[wire.UDP_HEADER_LEN:]
        elif proto == wire.IPPROTO_ETHERIP and len(body) >= 2:
            payload = body
        else:
            self.drops[D_BAD_FORWARD] += 1
            return
        if not self.floods.first_time(origin, payload, self.clock.now):
            self.drops[D_DUPLICATE] += 1
            return
        self.counts[C_FORWARDS_RECEIVED] += 1
        if proto == wire.IPPROTO_UDP:
            self.dispatch(payload, origin, vfwd_ok=False)
        else:
            self.raw(payload, origin)
        if ttl <= 1:  # delivered here, but its hop budget is spent: no re-send
            self.drops[D_HOP_LIMIT] += 1
            return
        # Re-send on our LAN as if the origin had multicast it here (spoofed source):
        # to the vnet's own group if it names one we take, else to the shared one.
        here = self.here
        group_b = bytes(inner[16:20])
        if group_b not in here.groups_b:
            group_b = here.mcaddr_b
        hdr = wire.ipv4_header(origin_b, group_b, proto, len(body), ttl=ttl - 1,
                               df=proto == wire.IPPROTO_ETHERIP)
        if bare and proto == wire.IPPROTO_UDP:  # its UDP length is 0: give the real one
            parts = (hdr, wire.udp_header(len(payload), body[0] << 8 | body[1], body[2] << 8 | body[3]), payload)
        else:
            parts = (hdr, body)
        try:
            self.send_ip(parts, (), 0, (socket.inet_ntoa(group_b), 0))
        except OSError:
            self.drops[D_SEND_ERROR] += 1
