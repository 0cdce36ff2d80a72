"""vnetd's link control: what a port's impairments do to the frames sent out of it
(doc/ports.md, "Link control").  Most hosts have no netem (this one included), and
tc on a port would not see vnetd's frames anyway on the way in (its packet socket
reads before tc ingress), so vnetd does it in its own datapath.

A port without link control has `Port.link` None and pays one attribute test per
frame.  With one, every frame vnetd sends out of the port goes through `PortLink.send`:

1. suspended: dropped (`link-suspended`); frames from the port are dropped too, before
   switching (Vnetd._port_readable);
2. loss: dropped with probability loss % (`link-loss`);
3. corrupt: with probability corrupt %, one random bit of one random byte of the
   Ethernet frame is flipped (in a copy), as netem does;
4. rate: a token bucket of one frame (a virtual clock): the frame leaves when the
   frames before it have left at `rate` bits per second; a frame that would wait more
   than QUEUE_TIME behind them is dropped (`link-rate`, tail drop);
5. delay and jitter: the frame leaves a time drawn uniformly from [delay - jitter,
   delay + jitter] (at least 0) after that.  Frames keep their order (a frame never
   leaves before the one sent before it), unlike netem, which reorders with jitter.

A frame that has to wait is copied into a FIFO, and one event-loop timer (Loop.call_at)
is armed for the head of the queue, never one per frame.  Frames are counted where
they end: tx when written, a drop reason when dropped, `tap-write-error` if the write
fails or the port goes away with frames queued, so every frame is counted once.

This is the per-packet path: no logging.
"""
from __future__ import annotations

import os
import random
from collections import deque
from typing import TYPE_CHECKING, Callable

from vnet.datapath.vnetd.loop import Clock
from vnet.datapath.vnetd.offload import VNET_HDR_LEN
from vnet.model.linkctl import LinkControl
from vnet.wire.stats import D_LINK_LOSS, D_LINK_RATE, D_LINK_SUSPENDED, D_TAP_WRITE_ERROR

if TYPE_CHECKING:
    from vnet.datapath.vnetd.ports import Port

#: The longest a frame waits behind others for its turn at the rate (the queue's
#: length in time, as tbf's latency): beyond it, a frame is dropped.
QUEUE_TIME = 0.1


class PortLink:
    """The link control of one attached port: its settings, its queue of frames waiting
    to leave, and the timer for the head of that queue.  `call_at(when, fn)` is the
    event loop's (Loop.call_at); `clock` is the time packet rules see (loop.Clock)."""

    __slots__ = ("port", "clock", "call_at", "drops", "rng", "suspended", "loss", "corrupt", "delay",
                 "jitter", "rate", "free_at", "last_due", "queue", "armed", "closed", "active")

    def __init__(self, port: Port, link: LinkControl, clock: Clock,
                 call_at: Callable[[float, Callable[[], None]], None], drops: list[int],
                 rng: random.Random | None = None) -> None:
        self.port = port
        self.clock = clock
        self.call_at = call_at
        self.drops = drops
        self.rng = rng or random.Random()
        self.queue: deque = deque()
        self.armed = False
        self.closed = False
        self.free_at = 0.0  # when the rate lets the next frame begin
        self.last_due = 0.0  # when the last frame queued leaves
        self.set(link)

    def set(self, link: LinkControl) -> None:
        """New settings, live: frames already queued leave as they were scheduled."""
        self.suspended = link.suspended
        self.loss = link.loss / 100.0
        self.corrupt = link.corrupt / 100.0
        self.delay = link.delay / 1000.0
        self.jitter = link.jitter / 1000.0
        self.rate = link.rate / 8.0 if link.rate else 0.0  # bytes per second
        self.active = link.active

    def send(self, raw) -> None:
        """One frame for the port, its virtio-net header in front (as Port.write_raw)."""
        drops = self.drops
        if self.suspended:
            drops[D_LINK_SUSPENDED] += 1
            return
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            drops[D_LINK_LOSS] += 1
            return
        if self.corrupt and rng.random() < self.corrupt:
            raw = bytearray(raw)
            at = VNET_HDR_LEN + rng.randrange(len(raw) - VNET_HDR_LEN) if len(raw) > VNET_HDR_LEN else 0
            raw[at] ^= 1 << rng.randrange(8)
        now = self.clock.now
        due = now
        if self.rate:
            start = self.free_at if self.free_at > now else now
            if start - now > QUEUE_TIME + 1e-9:  # (sums of float times)
                drops[D_LINK_RATE] += 1
                return
            self.free_at = start + (len(raw) - VNET_HDR_LEN) / self.rate
            due = start
        if self.delay or self.jitter:
            wait = self.delay + (rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
            if wait > 0:
                due += wait
        if due <= now and not self.queue:
            self._write(raw)
            return
        if due < self.last_due:
            due = self.last_due  # keep the order
        self.last_due = due
        self.queue.append((due, bytes(raw)))  # the buffer is reused for the next frame
        if not self.armed:
            self.armed = True
            self.call_at(due, self._due)

    def _write(self, raw) -> None:
        port = self.port
        try:
            os.write(port.fd, raw)
        except OSError:
            self.drops[D_TAP_WRITE_ERROR] += 1
            return
        port.tx_packets += 1
        port.tx_bytes += len(raw) - VNET_HDR_LEN

    def _due(self) -> None:
        """The timer: send every frame whose time has come, then arm for the next."""
        self.armed = False
        if self.closed:
            return
        self.clock.tick()
        now = self.clock.now
        queue = self.queue
        while queue and queue[0][0] <= now:
            self._write(queue.popleft()[1])
        if queue:
            self.armed = True
            self.call_at(queue[0][0], self._due)
        elif not self.active and self.port.link is self:
            self.port.link = None  # link control removed, its last frames gone: the plain path

    @property
    def busy(self) -> bool:
        """True while frames wait in the queue."""
        return bool(self.queue)

    def close(self) -> None:
        """The port is going: frames still queued are lost (counted)."""
        self.closed = True
        self.drops[D_TAP_WRITE_ERROR] += len(self.queue)
        self.queue.clear()
