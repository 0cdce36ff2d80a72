"""Streams on vnetd's control socket (the transport of `vn monitor` and `vn capture`):
a real ControlServer on a real Unix socket, its loop pumped in the test's thread and
the client (vnet.control.protocol.stream) in another."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from vnet.control import protocol
from vnet.datapath.vnetd import server as server_mod
from vnet.datapath.vnetd.loop import Loop
from vnet.datapath.vnetd.server import ControlServer, Stream
from vnet.errors import DatapathError

DEADLINE = 30.0


class Harness:
    def __init__(self, tmp_path) -> None:
        self.loop = Loop(lambda now: None)
        self.server = ControlServer(self.loop, datapath=None)
        self.path = tmp_path / "vnetd.sock"
        self.server.listen(self.path)
        self.streams: list[Stream] = []
        self.closed = 0

        def subscribe(command, stream: Stream) -> None:
            if command[1:] == ["refuse"]:
                raise DatapathError("EINVAL", "no such thing to watch")
            if command[1:] == ["crash"]:
                raise KeyError("a bug")
            stream.on_close.append(self._closed)
            self.streams.append(stream)

        self.server.streams["watch"] = subscribe

    def _closed(self) -> None:
        self.closed += 1

    def pump(self, until, what: str) -> None:
        end = time.monotonic() + DEADLINE
        while not until():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            self.loop.poll_once(0.05)

    def close(self) -> None:
        self.server.close()
        self.loop.close()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


def reader(path, command, got: list, errors: list, count: int) -> threading.Thread:
    def body() -> None:
        try:
            for msg in protocol.stream(path, command):
                got.append(msg)
                if len(got) == count:
                    return  # the generator's close closes the socket: the client leaves
        except DatapathError as e:
            errors.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_messages_arrive_in_order_and_the_subscriber_hears_the_client_leave(harness):
    got: list[bytes] = []
    errors: list[DatapathError] = []
    big = bytes(range(256)) * 4096  # 1 MiB: more than one socket buffer, flushed by the loop
    msgs = [b"first", big, b"", b"last"]
    t = reader(harness.path, ["watch"], got, errors, len(msgs))
    harness.pump(lambda: harness.streams, "the stream to open")
    for m in msgs:
        assert harness.streams[0].send(m)
    harness.pump(lambda: not t.is_alive(), "the client to read every message")
    assert errors == [] and got == msgs
    harness.pump(lambda: harness.closed == 1, "the server to notice the client left")
    assert harness.server.open_streams == set()
    assert not harness.streams[0].send(b"after")  # a closed stream takes nothing


def test_a_refused_stream_is_an_error_for_the_client(harness):
    got: list[bytes] = []
    errors: list[DatapathError] = []
    t = reader(harness.path, ["watch", "refuse"], got, errors, 1)
    harness.pump(lambda: not t.is_alive(), "the refusal")
    assert got == [] and [(e.code, e.message) for e in errors] == [("EINVAL", "no such thing to watch")]
    assert harness.server.open_streams == set()


def test_a_stream_handler_that_fails_is_an_error_for_the_client_not_the_end_of_vnetd(harness):
    got: list[bytes] = []
    errors: list[DatapathError] = []
    t = reader(harness.path, ["watch", "crash"], got, errors, 1)
    harness.pump(lambda: not t.is_alive(), "the error")
    assert got == [] and [e.code for e in errors] == ["EIO"] and "a bug" in errors[0].message
    t = reader(harness.path, ["watch"], got, errors, 1)  # the server still serves
    harness.pump(lambda: harness.streams, "the next stream to open")
    harness.streams[0].send(b"still here")
    harness.pump(lambda: not t.is_alive(), "the message")
    assert got == [b"still here"]


def test_a_client_that_does_not_read_costs_messages_not_the_loop(harness, monkeypatch):
    monkeypatch.setattr(server_mod, "STREAM_BUFFER", 1 << 20)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(harness.path))
    s.sendall(b"(watch)\n")
    s.shutdown(socket.SHUT_WR)
    harness.pump(lambda: harness.streams, "the stream to open")
    stream = harness.streams[0]
    sent = sum(stream.send(b"x" * 65536) for _ in range(200))  # 12.5 MiB offered, nobody reads
    assert stream.dropped == 200 - sent and stream.dropped > 0
    assert stream.queued <= 1 << 20
    s.close()
    harness.pump(lambda: harness.closed == 1, "the server to notice the client left")


def test_ordinary_commands_still_get_one_reply_each(harness):
    errors: list[DatapathError] = []

    def body() -> None:
        try:
            protocol.request(harness.path, [["no-such-command"]])
        except DatapathError as e:
            errors.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    harness.pump(lambda: not t.is_alive(), "the reply")
    assert [e.code for e in errors] == ["ENOSYS"]


def test_closing_the_server_ends_its_streams(harness):
    got: list[bytes] = []
    errors: list[DatapathError] = []
    t = reader(harness.path, ["watch"], got, errors, 10)
    harness.pump(lambda: harness.streams, "the stream to open")
    harness.streams[0].send(b"one")
    harness.server.close()
    t.join(DEADLINE)
    assert not t.is_alive() and got == [b"one"] and errors == [] and harness.closed == 1
