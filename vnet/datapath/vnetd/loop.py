"""vnetd's event loop: one thread over epoll, and the periodic sweep of the tables.

Every handler drains its descriptor in batches (`drain`), and the clock is read once
per batch into a `Clock`, which is the only time the packet rules see: they never
call time themselves, so a test sets the time they work with.
"""
from __future__ import annotations

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
    """Calls the handler of every readable descriptor, and `sweep(now)` about every
    SWEEP_INTERVAL seconds, until stop() (a signal handler) ends run()."""

    def __init__(self, sweep: Callable[[float], None]) -> None:
        self.sweep = sweep
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[], None]] = {}
        self.running = True

    def watch(self, fd: int, handler: Callable[[], None]) -> None:
        self.handlers[fd] = handler
        self.ep.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        self.handlers.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        while self.running:
            try:
                events = self.ep.poll(1.0)
            except InterruptedError:
                continue
            for fd, _ev in events:
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler()
            now = time.monotonic()
            if now >= next_sweep:
                self.sweep(now)
                next_sweep = now + SWEEP_INTERVAL

    def stop(self, *_args) -> None:
        self.running = False

    def close(self) -> None:
        self.ep.close()
