"""vnetd's event loop driving socket endpoints in the test's own thread, for the tests
of the endpoints themselves (tests/unit/test_endpoints.py, and against the real QEMU
in tests/netns/test_qemu_endpoints.py)."""
from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from vnet.datapath.vnetd.endpoint import Endpoint, open_endpoint
from vnet.datapath.vnetd.loop import Loop
from vnet.model.endpoint import EndpointSpec

#: How long a test may wait for what it expects: generous, reached only on a failure.
DEADLINE = 60.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port of 127.0.0.1 free at the moment."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EndpointHarness:
    """A Loop, the frames each endpoint delivered (`got[ep]`, and all of them in
    order in `frames`), and a pump that runs the loop until a condition holds."""

    def __init__(self) -> None:
        self.loop = Loop(lambda now: None)
        self.got: dict[Endpoint, list[bytes]] = defaultdict(list)
        self.frames: list[bytes] = []
        self.endpoints: list[Endpoint] = []

    def receive(self, ep: Endpoint, frames: Iterator[bytes]) -> None:
        for f in frames:
            self.got[ep].append(f)
            self.frames.append(f)

    def open(self, *words: str) -> Endpoint:
        ep = open_endpoint(EndpointSpec.parse(list(words)), self.loop, self.receive)
        self.endpoints.append(ep)
        return ep

    def pump(self, until: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
        end = time.monotonic() + deadline
        while not until():
            if time.monotonic() > end:
                raise AssertionError(f"no {what} within {deadline:g} s")
            self.loop.poll_once(0.05)

    def close(self) -> None:
        for ep in self.endpoints:
            ep.close()
        assert not self.loop.handlers, "an endpoint left a descriptor watched"
        self.loop.close()
