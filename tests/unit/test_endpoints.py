"""vnetd's socket endpoints on real loopback sockets, driven by vnetd's own event loop.

A plain socket of the test plays the VM's QEMU, speaking QEMU's framing
(vnet.wire.qemu); tests/netns/test_qemu_endpoints.py does the same with a real QEMU.
Every wait is for an event (a frame, a state), under a generous deadline."""
from __future__ import annotations

import errno
import os
import socket
import time

import pytest
from endpoint_harness import EndpointHarness, free_port

from vnet.datapath.vnetd import endpoint as ep_mod
from vnet.errors import DatapathError
from vnet.wire.qemu import MAX_FRAME, StreamReader, stream_encode

DEADLINE = 20.0




def frame(n: int = 60, tag: int = 0) -> bytes:
    return bytes.fromhex("ffffffffffff525400000001") + b"\x88\xb5" + bytes([tag]) * (n - 14)




@pytest.fixture
def h():
    harness = EndpointHarness()
    yield harness
    harness.close()


def recv_stream_frames(sock: socket.socket, count: int, reader: StreamReader | None = None) -> list[bytes]:
    reader = reader or StreamReader()
    out: list[bytes] = []
    sock.settimeout(DEADLINE)
    while len(out) < count:
        data = sock.recv(65536)
        assert data, "connection closed"
        out += reader.feed(data)
    return out


# -- udp


def test_udp_both_ways_and_only_with_the_vm(h):
    mine, vm_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    vm = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    vm.bind(("127.0.0.1", vm_port))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with vm, stranger:
        ep = h.open("udp", f"127.0.0.1:{mine}", f"127.0.0.1:{vm_port}")
        assert ep.state == "connected"
        sent = [frame(60, 1), frame(1514, 2), frame(9014, 3)]
        for f in sent:
            vm.sendto(f, ("127.0.0.1", mine))
        stranger.sendto(frame(60, 9), ("127.0.0.1", mine))
        vm.sendto(b"short", ("127.0.0.1", mine))
        h.pump(lambda: ep.rx_runts == 1 and ep.rx_foreign == 1 and len(h.frames) == 3, "udp frames")
        assert h.frames == sent
        assert (ep.rx_packets, ep.rx_bytes) == (3, sum(map(len, sent)))
        for f in sent:
            assert ep.send(f)
        vm.settimeout(DEADLINE)
        assert [vm.recvfrom(65535) for _ in sent] == [(f, ("127.0.0.1", mine)) for f in sent]
        assert ep.counters()["tx_packets"] == 3


def test_udp_address_in_use_is_a_clear_error(h):
    port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        with pytest.raises(DatapathError) as e:
            h.open("udp", f"127.0.0.1:{port}", "127.0.0.1:9")
    assert e.value.code == "EADDRINUSE"
    assert f"endpoint udp 127.0.0.1:{port} 127.0.0.1:9: cannot bind 127.0.0.1:{port}" in str(e.value)
    assert not h.loop.handlers


# -- tcp-listen


def test_tcp_listen_frames_in_pieces_and_back(h):
    port = free_port()
    ep = h.open("tcp-listen", f"127.0.0.1:{port}")
    assert ep.state == "listening"
    assert not ep.send(frame()) and ep.tx_down == 1
    with socket.create_connection(("127.0.0.1", port)) as vm:
        vm.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        h.pump(lambda: ep.state == "connected", "connection")
        sent = [frame(60, 1), frame(9014, 2), frame(65000, 3)]
        wire = b"".join(map(stream_encode, sent))
        for i in range(0, 300, 1):  # the first frames dribble in byte by byte
            vm.sendall(wire[i:i + 1])
        vm.sendall(wire[300:])
        h.pump(lambda: len(h.frames) == 3, "stream frames")
        assert h.frames == sent
        for f in sent:
            assert ep.send(f)
        assert recv_stream_frames(vm, 3) == sent


def test_tcp_listen_a_new_client_replaces_the_old(h):
    port = free_port()
    ep = h.open("tcp-listen", f"127.0.0.1:{port}")
    old = socket.create_connection(("127.0.0.1", port))
    h.pump(lambda: ep.state == "connected", "first connection")
    new = socket.create_connection(("127.0.0.1", port))
    with old, new:
        h.pump(lambda: ep.counters()["replaced"] == 1, "replacement")
        old.settimeout(DEADLINE)
        assert old.recv(10) == b""  # the old client was closed
        assert ep.send(frame(60, 7))
        assert recv_stream_frames(new, 1) == [frame(60, 7)]
        new.sendall(stream_encode(frame(61, 8)))
        h.pump(lambda: h.frames, "frame from the new client")
        assert h.frames == [frame(61, 8)]
    h.pump(lambda: ep.state == "listening", "listening again after the client left")


def test_tcp_listen_cuts_a_stream_with_an_absurd_length(h):
    port = free_port()
    ep = h.open("tcp-listen", f"127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port)) as bad:
        bad.sendall(stream_encode(frame(60, 1)) + (MAX_FRAME + 1).to_bytes(4, "big") + b"x" * 100)
        h.pump(lambda: ep.framing_errors == 1 and ep.state == "listening", "cut connection")
        assert h.frames == [frame(60, 1)]
        bad.settimeout(DEADLINE)
        assert bad.recv(10) == b""
    with socket.create_connection(("127.0.0.1", port)) as good:  # the next client is served
        good.sendall(stream_encode(frame(60, 2)))
        h.pump(lambda: len(h.frames) == 2, "frame after the cut")


def test_tcp_listen_address_in_use(h):
    port = free_port()
    h.open("tcp-listen", f"127.0.0.1:{port}")
    with pytest.raises(DatapathError) as e:
        h.open("tcp-listen", f"0.0.0.0:{port}")
    assert e.value.code == "EADDRINUSE"
    assert f"endpoint tcp-listen 0.0.0.0:{port}: cannot bind 0.0.0.0:{port}" in str(e.value)


def test_tcp_send_never_blocks_and_never_tears_a_frame(h):
    """A VM that does not read: frames are dropped whole (tx_busy) once the socket is
    full, and what was sent, partial writes included, reads back as whole frames."""
    port = free_port()
    ep = h.open("tcp-listen", f"127.0.0.1:{port}")
    vm = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    vm.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    vm.connect(("127.0.0.1", port))
    with vm:
        h.pump(lambda: ep.state == "connected", "connection")
        sent = []
        start = time.monotonic()
        i = 0
        while ep.tx_busy < 50:
            f = frame(1000 + (i * 7919) % 60000, i % 256)
            if ep.send(f):
                sent.append(f)
            i += 1
            assert time.monotonic() - start < DEADLINE
        assert ep.tx_packets == len(sent)
        # Let the loop flush the tail of a partly written frame while the VM reads.
        vm.setblocking(False)
        reader, got = StreamReader(), []
        deadline = time.monotonic() + DEADLINE
        while len(got) < len(sent):
            assert time.monotonic() < deadline, f"{len(got)} of {len(sent)} frames read back"
            h.loop.poll_once(0.01)
            try:
                data = vm.recv(1 << 20)
            except BlockingIOError:
                continue
            assert data
            got += reader.feed(data)
        assert got == sent
        assert reader.pending == 0


# -- tcp-connect


def test_tcp_connect_waits_connects_and_comes_back(h):
    port = free_port()
    ep = h.open("tcp-connect", f"127.0.0.1:{port}")
    h.pump(lambda: ep.counters()["attempts"] >= 2, "attempts with no server")
    assert ep.state == "waiting"
    assert not ep.send(frame())
    for generation in range(3):  # the VM's QEMU restarted twice
        with socket.create_server(("127.0.0.1", port)) as server:
            h.pump(lambda: ep.state == "connected", "connection")
            server.settimeout(DEADLINE)
            conn, _ = server.accept()
            with conn:
                conn.sendall(stream_encode(frame(70, generation)))
                h.pump(lambda: len(h.frames) == generation + 1, "frame")
                assert ep.send(frame(80, generation))
                assert recv_stream_frames(conn, 1) == [frame(80, generation)]
        h.pump(lambda: ep.state == "waiting", "loss of the connection")
    assert h.frames == [frame(70, g) for g in range(3)]
    assert ep.connects == 3


def test_tcp_connect_backoff_grows_and_is_bounded(h):
    port = free_port()
    ep = h.open("tcp-connect", f"127.0.0.1:{port}")
    h.pump(lambda: ep.counters()["attempts"] >= 6, "six attempts")
    assert ep.backoff == ep_mod.BACKOFF_MAX
    assert ep.state == "waiting" and ep.connects == 0


def test_close_leaves_nothing_open(h):
    port = free_port()
    eps = [h.open("tcp-listen", f"127.0.0.1:{port}"),
           h.open("tcp-connect", f"127.0.0.1:{port}"),
           h.open("udp", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "127.0.0.1:9")]
    h.pump(lambda: eps[0].state == "connected" and eps[1].state == "connected", "both ends")
    fds = [fd for ep in eps for fd in ep.filenos()]
    assert len(fds) == 4  # listener, accepted, connected, udp
    for ep in eps:
        ep.close()
    for fd in fds:
        with pytest.raises(OSError) as e:
            os.fstat(fd)
        assert e.value.errno == errno.EBADF
    assert not h.loop.handlers
    h.loop.poll_once(0.3)  # stale timers fire and do nothing
    assert all(ep.state == "waiting" and not ep.filenos() for ep in eps)
