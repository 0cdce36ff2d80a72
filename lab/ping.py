"""iputils ``ping``: the command line the lab runs, and what its output says.

Kept apart from the lab so the parser can be tested without root or namespaces.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PingResult", "parse_ping", "ping_argv", "wait_answer"]


@dataclass
class PingResult:
    """Summary of one iputils ``ping`` run.

    Duplicates are kept separately because they are the symptom of a
    forwarding loop or a double-delivering tunnel - a bug that a bare
    "received > 0" check would miss.
    """

    transmitted: int
    received: int
    duplicates: int
    output: str

    @property
    def ok(self) -> bool:
        return self.received > 0

    @property
    def loss(self) -> float:
        """Packet loss in percent, as ping computes it (duplicates excluded)."""
        if self.transmitted <= 0:
            return 100.0
        lost = max(self.transmitted - self.received, 0)
        return 100.0 * lost / self.transmitted


_PING_STATS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_DUPS = re.compile(r"\+(\d+) duplicates")


#: A reply; not an error report ("From 10.0.0.1 icmp_seq=1 Destination Host Unreachable").
_REPLY = re.compile(r"^\d+ bytes from .*?icmp_seq=(\d+) .*?(\(DUP!\))?$", re.M)


def parse_ping(output: str, count: int | None = None) -> PingResult:
    """Parse iputils ping output; missing statistics mean nothing was sent.

    ping prints no summary at all when it cannot even start (no route, bad
    address), so a zero result rather than an exception lets callers treat
    "unreachable" and "no answer" alike.

    With ``count``, the result is about the first ``count`` requests only.  Given a
    deadline (``-w``), ping sends on past its count until it has that many replies,
    so on a slow machine it may send one more and see both late replies arrive
    together: "6 received" for a 5-ping run in which nothing went wrong.
    """
    m = _PING_STATS.search(output)
    if not m:
        return PingResult(0, 0, 0, output)
    if count is not None:
        replies = [(int(seq), bool(dup)) for seq, dup in _REPLY.findall(output)]
        return PingResult(
            transmitted=min(int(m.group(1)), count),
            received=len({seq for seq, dup in replies if seq <= count and not dup}),
            duplicates=sum(dup for seq, dup in replies if seq <= count),
            output=output,
        )
    dups = _PING_DUPS.search(output)
    return PingResult(
        transmitted=int(m.group(1)),
        received=int(m.group(2)),
        duplicates=int(dups.group(1)) if dups else 0,
        output=output,
    )


def ping_argv(address: str, count: int, interval: float, timeout: float) -> list[str]:
    """``count`` pings of ``address``, ``interval`` s apart, giving up after ``timeout`` s.

    ``-n`` keeps ping from trying reverse DNS, which inside an isolated
    namespace would only add seconds of timeouts.
    """
    return [
        "ping", "-n",
        "-c", str(count),
        "-i", f"{interval:g}",
        "-W", "1",
        "-w", f"{timeout:g}",
        address,
    ]


def wait_answer(ping_once: Callable[[], PingResult], failure: str, timeout: float) -> float:
    """Call ``ping_once`` until it gets an answer; return the seconds that took.

    After ``timeout`` seconds: TimeoutError saying ``failure`` and ping's last words.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        res = ping_once()
        now = time.monotonic()
        if res.ok:
            return now - start
        if now >= deadline:
            raise TimeoutError(f"{failure} within {timeout}s; last output:\n{res.output}")
        if res.transmitted == 0:
            # Failed before sending (e.g. no route yet): don't spin.
            time.sleep(0.1)
