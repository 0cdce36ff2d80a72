"""vnetd's event loop: one thread over epoll, and the periodic sweep of the tables.

Every handler drains its descriptor in batches (`drain`), and the clock is read once
per batch into a `Clock`, which is the only time the packet rules see: they never
call time themselves, so a test sets the time they work with.
"""
from __future__ import annotations

import heapq
import itertools
import select
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from vnet.datapath.vnetd.tables import SWEEP_INTERVAL

#: Packets handled per readable descriptor before the loop looks at the others.
BATCH = 64

T = TypeVar("T")


class Clock:
    """The time of the current batch, in time.monotonic() seconds."""

    __slots__ = ("now",)

    def __init__(self, now: float | None = None) -> None:
        self.now = time.monotonic() if now is None else now

    def tick(self) -> None:
        self.now = time.monotonic()


def drain(receive: Callable[[], T], clock: Clock, drops: list[int], error: int) -> Iterator[T]:
    """What receive() returns, at most BATCH times, until the descriptor is empty; a
    failure is counted as drop reason `error` and ends the batch.  The clock is read
    here, once, before the batch (not per packet).  Every receive loop uses this."""
    clock.tick()
    return _batch(receive, drops, error)


def _batch(receive: Callable[[], T], drops: list[int], error: int) -> Iterator[T]:
    for _ in range(BATCH):
        try:
            got = receive()
        except BlockingIOError:
            return
        except OSError:
            drops[error] += 1
            return
        yield got


class Loop:
    """Calls the handler of every ready descriptor, the timers that are due, and
    `sweep(now)` about every SWEEP_INTERVAL seconds, until stop() (a signal handler)
    ends run().  Timers serve the few things that must happen at a time of their own
    (an endpoint's next connection attempt), not per packet."""

    def __init__(self, sweep: Callable[[float], None]) -> None:
        self.sweep = sweep
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[], None]] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.running = True

    def watch(self, fd: int, handler: Callable[[], None], events: int = select.EPOLLIN) -> None:
        """Call handler() while `fd` is ready for `events` (level-triggered; errors and
        hang-ups always count as ready).  Watching a watched fd replaces its handler and
        events."""
        if fd in self.handlers:
            self.ep.modify(fd, events)
        else:
            self.ep.register(fd, events)
        self.handlers[fd] = handler

    def unwatch(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Call fn() once, at time.monotonic() `when` or as soon after as the loop can."""
        heapq.heappush(self.timers, (when, next(self._seq), fn))

    def poll_once(self, timeout: float) -> None:
        """Wait at most `timeout` seconds (less if a timer is due sooner) for ready
        descriptors, call their handlers, then the timers that are due."""
        if self.timers:
            timeout = max(0.0, min(timeout, self.timers[0][0] - time.monotonic()))
        try:
            events = self.ep.poll(timeout)
        except InterruptedError:
            events = []
        for fd, _ev in events:
            handler = self.handlers.get(fd)
            if handler is not None:
                handler()
        if self.timers:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()

    def run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while self.running:
            self.poll_once(1.0)
            now = time.monotonic()
            if now >= next_sweep:
                self.sweep(now)
                next_sweep = now + SWEEP_INTERVAL

    def stop(self, *_args) -> None:
        self.running = False

    def close(self) -> None:
        self.ep.close()
