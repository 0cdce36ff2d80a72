"""A vnet on this host, as the packet rules see it.

One object per vnet holds everything a packet of that vnet needs (its tap, the header
put in front of its frames, its keys and its senders' sessions, its counters), so the
per-packet code reaches it with one dict lookup by the 16-byte vnet id.  It does not
open the tap itself: the daemon does, and a test hands it a pipe instead.

Its local attachments (vnet.datapath.vnetd.attach: the tap, the ports that have
their interface and the socket endpoints) are `attachments`.  With one (the tap on a bridge, as before ports)
the bridge does the local switching and `switching` is False; with more, the datapath
switches between them by `macs`, the attachment each local source MAC was last seen
on (doc/ports.md, "Local switching").
"""
from __future__ import annotations

import socket

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from vnet.datapath.vnetd.attach import Attachment, Tap
from vnet.datapath.vnetd.offload import PLAIN_FRAME_MAX
from vnet.model import keys
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.wire import formats as wire
from vnet.wire import seal


class Vnet:
    """A vnet on this host: its config, tap, header prefix, keys and counters.

    `level` is 0 for (security none); a secure vnet also has its key secrets by key
    id, the send key's id, the send cipher for this host's session (made when the key
    or the session changes, not per packet) and a `Sender` entry per sending host
    (doc/security.md, "Sessions")."""

    __slots__ = ("cfg", "vid", "fd", "prefix", "udp", "bridge_created", "mtu", "plain_max", "fragments",
                 "level", "secrets", "send_id", "send_cipher", "send_session", "senders", "group", "group_b",
                 "rx_packets", "tx_packets", "rx_bytes", "tx_bytes",
                 "tap", "ports", "endpoints", "attachments", "switching", "macs")

    def __init__(self, cfg: VnetConfig, fd: int, bridge_created: bool, held: list[keys.Key]) -> None:
        self.cfg = cfg
        self.mtu = cfg.mtu
        #: Longer frames written to an attachment are TCP super-frames to segment.
        self.plain_max = max(PLAIN_FRAME_MAX, cfg.mtu + 14)
        self.fragments = cfg.fragments
        self.vid = cfg.id.packed
        self.fd = fd
        self.tap = Tap(cfg.vnetif, fd)
        #: Every port by interface name, in config order: its Port, or None while waiting.
        self.ports: dict[str, Attachment | None] = {}
        #: Every socket endpoint (doc/endpoints.md) by its spec, in config order.
        self.endpoints: dict[EndpointSpec, Attachment] = {}
        self.attachments: list[Attachment] = [self.tap]
        self.switching = False
        self.macs: dict[bytes, Attachment] = {}
        self.udp = cfg.encapsulation == "udp"
        self.prefix = wire.vudp_prefix(self.vid) if self.udp else wire.etherip_prefix(self.vid)
        self.bridge_created = bridge_created
        #: The vnet's own group (config `group`), or None: floods go to the shared one.
        self.group = cfg.group
        self.group_b = socket.inet_aton(cfg.group) if cfg.group else None
        self.level = seal.LEVELS[cfg.security]
        #: Per sending host's 4-byte address (at most receive.MAX_SENDERS).
        self.senders: dict[bytes, SenderEntry] = {}
        self.set_keys(held)
        self.rx_packets = self.tx_packets = self.rx_bytes = self.tx_bytes = 0

    def set_keys(self, held: list[keys.Key]) -> None:
        """Take a new key set in one step; the first key is the one we send with.

        Confirmed sessions and windows stay (they do not depend on the key), but every
        cached cipher goes: a key id may now name another secret."""
        self.secrets = {k.id: k.secret for k in held}
        self.send_id = held[0].id if held else 0
        self.send_cipher: ChaCha20Poly1305 | None = None
        self.send_session: bytes | None = None
        for s in self.senders.values():
            s.ciphers.clear()

    def cipher_to_send(self, session: bytes) -> ChaCha20Poly1305:
        """The send key's cipher for this host's `session`: one HChaCha20 per key or
        session change, a compare per packet."""
        if self.send_session != session:
            self.send_cipher = seal.aead(self.secrets[self.send_id], session)
            self.send_session = session
        return self.send_cipher

    def set_attachments(self) -> None:
        """After a port or endpoint came or went: the attachments, and whether we switch."""
        self.attachments = ([self.tap] + [p for p in self.ports.values() if p is not None]
                            + list(self.endpoints.values()))
        self.switching = len(self.attachments) > 1
        live = set(map(id, self.attachments))
        for mac in [m for m, a in self.macs.items() if id(a) not in live]:
            del self.macs[mac]


#: Ciphers one Sender caches: its confirmed session's and a new one's under one or two
#: keys (a rotation) fit; beyond this the cache starts again.
SENDER_CIPHERS = 4


class SenderEntry:
    """What a secure vnet keeps of one sending host (doc/security.md, "Sessions"): the
    session it confirmed by answering our challenge (None before), the replay window of
    that session, the challenge we wait an answer for and when we sent it, and the
    ciphers of its (key id, session) pairs whose tags verified.  Only messages whose
    tag verified make or change one, so only a key holder can fill the table."""

    __slots__ = ("session", "window", "challenge", "sent", "ciphers")

    def __init__(self) -> None:
        self.session: bytes | None = None
        self.window = seal.ReplayWindow()
        self.challenge: bytes | None = None
        self.sent = 0.0
        self.ciphers: dict[tuple[int, bytes], ChaCha20Poly1305] = {}

    def confirm(self, session: bytes, counter: int) -> None:
        """`session` answered our challenge with `counter`: from now on its messages are
        taken, and none numbered up to the answer's counter ever (so nothing sealed
        before the answer, however recorded, is accepted).  A session confirmed again
        keeps its window."""
        if session != self.session:
            self.session = session
            self.window = seal.ReplayWindow(counter)
        self.challenge = None

    def keep_cipher(self, key_id: int, session: bytes, cipher: ChaCha20Poly1305) -> None:
        """Cache a cipher whose tag verified; bounded, so a chatty sender's many
        sessions cannot grow it."""
        if len(self.ciphers) >= SENDER_CIPHERS:
            self.ciphers.clear()
        self.ciphers[key_id, session] = cipher
