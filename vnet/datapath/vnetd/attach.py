"""A vnet's local attachments: where its frames enter and leave it on this host.

A vnet has its device (the tap, `vnif97`: on the vnet's bridge, or alone with
`(bridge none)`) and one attachment per port that has its interface now (an AF_PACKET
socket bound to the interface, doc/ports.md).  The packet rules see every attachment
the same way:

* `fd` is watched by the loop; when it is readable, `frames()` drains it, yielding each
  frame behind a virtio-net header (10 bytes: GSO and checksum metadata, ZERO_HDR for
  a plain frame), as the tap gives them.  Frames yielded may share one buffer: each is
  handled before the next is read.
* `write(hdr, frame)` sends one frame from the network out of the attachment, `hdr`
  being its virtio-net header (for a super-frame, the GSO metadata the kernel
  segments it by); `write_raw(raw)` sends one frame as another attachment gave it
  (header in front).  Both raise OSError if they cannot, and count `tx`.

A third kind, a QEMU socket endpoint (UDP datagrams, or a TCP stream with a 4-byte
length prefix), plugs in by the same methods: its `frames()` reads each frame into a
buffer at offset VNET_HDR_LEN behind ZERO_HDR (no copy) and yields that (counting
nothing: Transmit.switch counts rx); its `write` and `write_raw` drop the header,
cut a super-frame (header byte 1, the GSO type, not 0) into segments with
offload.segment first, and frame what they send.  The daemon then keeps it beside
the ports (a dict of endpoints that Vnet.set_attachments includes) and watches its
fd with `tx.from_tap(v, a.frames(clock, drops), a)`, as `Vnetd._port_readable` does;
local switching, learning, pause-frame drops and delivery need nothing more.

This is the per-packet path: no logging, no parsing libraries.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterator

from vnet.datapath.vnetd.loop import Clock, drain
from vnet.datapath.vnetd.offload import VNET_HDR_LEN
from vnet.wire.stats import D_TAP_READ_ERROR

#: The largest read from a tap: a 64 KB super-frame behind its virtio-net header.
TAP_READ = 65536 + VNET_HDR_LEN


class Attachment:
    """One local attachment of a vnet, with the counters of frames through it: rx
    from the attachment into the vnet, tx out of the vnet into it."""

    __slots__ = ("name", "fd", "rx_packets", "tx_packets", "rx_bytes", "tx_bytes")

    #: True for a port: frames from it are checked for pause frames.
    is_port = False

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd
        self.rx_packets = self.tx_packets = self.rx_bytes = self.tx_bytes = 0

    def frames(self, clock: Clock, drops: list[int]) -> Iterator:
        """The frames waiting to be read, at most a batch (loop.drain)."""
        raise NotImplementedError

    def write(self, hdr: bytes, frame) -> None:
        os.writev(self.fd, (hdr, frame))
        self.tx_packets += 1
        self.tx_bytes += len(frame)

    def write_raw(self, raw) -> None:
        """A frame as read from another attachment, its virtio-net header in front."""
        os.write(self.fd, raw)
        self.tx_packets += 1
        self.tx_bytes += len(raw) - VNET_HDR_LEN

    def close(self) -> None:
        os.close(self.fd)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} fd {self.fd}>"


class Tap(Attachment):
    """The vnet's device: a tap (vnet.host.netdev.open_tap); the daemon reads it."""

    __slots__ = ()

    def frames(self, clock: Clock, drops: list[int]) -> Iterator:
        return drain(functools.partial(os.read, self.fd, TAP_READ), clock, drops, D_TAP_READ_ERROR)
