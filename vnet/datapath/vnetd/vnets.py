"""A vnet on this host, as the packet rules see it.

One object per vnet holds everything a packet of that vnet needs (its tap, the header
put in front of its frames, its keys and replay windows, its counters), so the
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

from vnet.datapath.vnetd.attach import Attachment, Tap
from vnet.datapath.vnetd.offload import PLAIN_FRAME_MAX
from vnet.model import keys
from vnet.model.config import VnetConfig
from vnet.model.endpoint import EndpointSpec
from vnet.wire import formats as wire
from vnet.wire import seal


class Vnet:
    """A vnet on this host: its config, tap, header prefix, keys and counters.

    `level` is 0 for (security none); a secure vnet also has its ciphers by key id,
    the send key's id and cipher, and a replay window per sender (doc/security.md)."""

    __slots__ = ("cfg", "vid", "fd", "prefix", "udp", "bridge_created", "mtu", "plain_max", "fragments",
                 "level", "ciphers", "send_id", "send_cipher", "windows", "group", "group_b",
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
        self.windows: dict[bytes, seal.ReplayWindow] = {}
        self.set_keys(held)
        self.rx_packets = self.tx_packets = self.rx_bytes = self.tx_bytes = 0

    def set_keys(self, held: list[keys.Key]) -> None:
        """Take a new key set in one step; the first key is the one we send with."""
        self.ciphers = {k.id: seal.aead(k.secret) for k in held}
        self.send_id = held[0].id if held else 0
        self.send_cipher = self.ciphers.get(self.send_id)

    def set_attachments(self) -> None:
        """After a port or endpoint came or went: the attachments, and whether we switch."""
        self.attachments = ([self.tap] + [p for p in self.ports.values() if p is not None]
                            + list(self.endpoints.values()))
        self.switching = len(self.attachments) > 1
        live = set(map(id, self.attachments))
        for mac in [m for m, a in self.macs.items() if id(a) not in live]:
            del self.macs[mac]
