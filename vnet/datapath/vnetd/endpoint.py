"""vnetd's socket endpoints: a VM's QEMU socket NIC as one more attachment of a vnet.

Each endpoint owns its sockets and keeps them registered with the event loop itself,
because the descriptors change under it: a listening endpoint gets a new connection
when a restarted QEMU connects again, a connecting one makes a new socket for every
attempt.  What the datapath sees is small and fixed:

* `receive(endpoint, frames)` (given at construction) is called whenever the endpoint
  is readable, with an iterator of whole Ethernet frames (at most `BATCH` reads'
  worth);
* `send(frame)` writes one frame and never blocks: a frame the socket cannot take now
  (buffer full, no connection) is dropped and counted, as a switch port drops what
  its queue cannot hold, so one slow VM never stalls the daemon;
* `state` is `connected`, `listening` (tcp-listen without a client) or `waiting`
  (tcp-connect between attempts); `counters()` holds the rest.

The rules, each the answer to a known pain of QEMU's own socket links:

* udp: bound to LOCAL, sends to REMOTE and to no one else, and takes datagrams only
  from REMOTE (others are counted in `rx_foreign` and dropped): nothing is learned
  from the network, so no one can redirect a VM's traffic by sending it a datagram.
* tcp-listen: one client at a time; a new connection replaces the current one, so a
  QEMU restarted with `-netdev stream`/`socket,connect=` is back at once even if its
  old connection was never closed (host crash, network cut).
* tcp-connect: connects again for ever, 0.1 s after a loss and backing off to 1 s
  between failed attempts, each bounded by `CONNECT_TIMEOUT`; a QEMU that listens
  can be restarted at will.
* a stream whose length prefix cannot be QEMU's (more than `MAX_FRAME`) is cut, as
  QEMU does, and counted in `framing_errors`: a listening endpoint waits for the
  next client, a connecting one connects again.
"""
from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from vnet.datapath.vnetd.attach import Attachment
from vnet.datapath.vnetd.loop import BATCH
from vnet.datapath.vnetd.offload import VNET_HDR_LEN, ZERO_HDR, finish_checksum, segment
from vnet.datapath.vnetd.underlay import big_buffer
from vnet.errors import DatapathError
from vnet.model.endpoint import EndpointSpec
from vnet.wire.qemu import (
    ETH_HEADER,
    MAX_FRAME,
    FramingError,
    StreamReader,
    stream_encode,
)

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "CONNECT_TIMEOUT",
    "Endpoint",
    "EndpointAttachment",
    "Reactor",
    "TcpConnectEndpoint",
    "TcpListenEndpoint",
    "UdpEndpoint",
    "open_endpoint",
]

#: First wait before connecting again (after a loss or a failed attempt), and the
#: longest: doubled after every failure in between.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 1.0
#: How long one connection attempt may stay unanswered (a SYN into a black hole
#: would otherwise wait for the kernel's two minutes of retries).
CONNECT_TIMEOUT = 5.0
#: One read from a stream socket: many frames at once, so few system calls.
STREAM_READ = 256 * 1024
#: The largest datagram (a UDP payload cannot be longer).
DGRAM_READ = 65535

STATES = ("connected", "listening", "waiting")


class Reactor(Protocol):
    """What an endpoint needs of the event loop (`vnet.datapath.vnetd.loop.Loop`)."""

    def watch(self, fd: int, handler: Callable[[], None], events: int = ...) -> None: ...
    def unwatch(self, fd: int) -> None: ...
    def call_at(self, when: float, fn: Callable[[], None]) -> None: ...


Receive = Callable[["Endpoint", Iterator[bytes]], None]


class Endpoint:
    """Common counters and the interface the datapath uses; see the module doc."""

    #: Counter names, in the order `counters()` gives them.
    COUNTERS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_busy", "tx_down",
                "tx_errors", "rx_errors", "rx_runts", "rx_foreign", "framing_errors",
                "connects")

    def __init__(self, spec: EndpointSpec, reactor: Reactor, receive: Receive) -> None:
        self.spec = spec
        self.reactor = reactor
        self.receive = receive
        self.state = "waiting"
        self.closed = False
        self.rx_packets = self.rx_bytes = 0
        self.tx_packets = self.tx_bytes = 0
        self.tx_busy = 0  # dropped: the socket's send buffer was full
        self.tx_down = 0  # dropped: no connection to send on
        self.tx_errors = self.rx_errors = 0
        self.rx_runts = 0  # frames shorter than an Ethernet header, dropped
        self.rx_foreign = 0  # udp: datagrams from anyone but the VM, dropped
        self.framing_errors = 0  # stream lengths no QEMU sends: connection cut
        self.connects = 0  # connections made (tcp) or bindings (udp)
        #: Set by a consumer that wants each frame behind VNET_HDR_LEN zero bytes (the
        #: daemon: a virtio-net header for the packet rules), where the endpoint can
        #: read it there with no copy (HEADER_ROOM); frames then share one buffer.
        self.with_hdr = False

    #: Whether `with_hdr` is honoured (udp: the datagram is read behind the header).
    HEADER_ROOM = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec} {self.state}>"

    def start(self) -> None:
        """Open the sockets.  Raises DatapathError (EADDRINUSE, EADDRNOTAVAIL, EACCES,
        ...) naming the endpoint and address when a socket of ours cannot be bound;
        nothing is left open then."""
        raise NotImplementedError

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Write one frame to the VM; False (and counted) if it was dropped."""
        raise NotImplementedError

    def on_readable(self) -> Iterator[bytes]:
        """The frames the socket holds now, at most BATCH reads' worth."""
        raise NotImplementedError

    def filenos(self) -> list[int]:
        """The descriptors open now (for listings and tests; the endpoint watches them)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTERS}

    def _bind(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        try:
            sock.bind(addr)
        except OSError as e:
            sock.close()
            raise DatapathError.from_os_error(
                e, f"endpoint {self.spec}: cannot bind {addr[0]}:{addr[1]}") from None


class UdpEndpoint(Endpoint):
    """`(endpoint udp LOCAL REMOTE)`: QEMU `-netdev dgram` / `socket,udp=`, libvirt
    `type='udp'`.  A datagram socket has no connection to lose: once bound it is
    `connected` until closed."""

    def __init__(self, spec: EndpointSpec, reactor: Reactor, receive: Receive) -> None:
        super().__init__(spec, reactor, receive)
        assert spec.local is not None and spec.remote is not None
        self.remote = spec.remote
        self.sock: socket.socket | None = None
        self._buf = bytearray(VNET_HDR_LEN + DGRAM_READ)
        self._mv = memoryview(self._buf)

    HEADER_ROOM = True

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        # One frame a datagram, never a super-frame: a burst from the VM is many
        # datagrams, which the default buffer (about 200 KB) drops while the loop is busy.
        big_buffer(sock)
        # No SO_REUSEADDR: a second socket on this port (another endpoint, a QEMU) must
        # fail to bind rather than silently share the VM's datagrams.
        self._bind(sock, self.spec.local)  # type: ignore[arg-type]
        self.sock = sock
        self.reactor.watch(sock.fileno(), self._readable)
        self.state = "connected"
        self.connects += 1

    def _readable(self) -> None:
        self.receive(self, self.on_readable())

    def on_readable(self) -> Iterator[bytes]:
        if self.with_hdr:
            return self._behind_header()
        return self._frames()

    def _behind_header(self) -> Iterator[memoryview]:
        """Each datagram from the VM read into one buffer, behind VNET_HDR_LEN zero bytes
        (valid until the next read); others' datagrams and runts counted, not given."""
        sock = self.sock
        remote = self.remote
        mv = self._mv
        into = mv[VNET_HDR_LEN:]
        for _ in range(BATCH):
            if sock is not self.sock:
                return
            try:
                n, sender = sock.recvfrom_into(into)  # type: ignore[union-attr]
            except BlockingIOError:
                return
            except OSError:
                self.rx_errors += 1
                return
            if sender != remote:
                self.rx_foreign += 1
                continue
            if n < ETH_HEADER:
                self.rx_runts += 1
                continue
            self.rx_packets += 1
            self.rx_bytes += n
            yield mv[:VNET_HDR_LEN + n]

    def _frames(self) -> Iterator[bytes]:
        """Each frame on its own, for a consumer that keeps it past the next read."""
        for frame in self._behind_header():
            yield bytes(frame[VNET_HDR_LEN:])

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        sock = self.sock
        if sock is None:
            self.tx_down += 1
            return False
        try:
            sock.sendto(frame, self.remote)
        except BlockingIOError:
            self.tx_busy += 1
            return False
        except OSError:
            self.tx_errors += 1
            return False
        self.tx_packets += 1
        self.tx_bytes += len(frame)
        return True

    def filenos(self) -> list[int]:
        return [self.sock.fileno()] if self.sock is not None else []

    def close(self) -> None:
        self.closed = True
        if self.sock is not None:
            self.reactor.unwatch(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.state = "waiting"


class _StreamEndpoint(Endpoint):
    """One TCP connection at a time in QEMU's stream framing; subclasses say where
    connections come from (`_lost` is what happens when one ends)."""

    def __init__(self, spec: EndpointSpec, reactor: Reactor, receive: Receive) -> None:
        super().__init__(spec, reactor, receive)
        self.conn: socket.socket | None = None
        self.peer: tuple[str, int] | None = None
        self.reader = StreamReader(MAX_FRAME)
        self._rbuf = bytearray(STREAM_READ)
        self._rview = memoryview(self._rbuf)
        # The unsent tail of a frame the kernel took only part of: it must go out
        # before anything else, or the VM's QEMU would read a frame as a length.
        self._pending: memoryview | None = None

    # -- the connection

    def _adopt(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as QEMU does
        self.conn = conn
        self.peer = peer
        self.reader.reset()
        self._pending = None
        self.reactor.watch(conn.fileno(), self._conn_event)
        self.state = "connected"
        self.connects += 1

    def _close_conn(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.reactor.unwatch(conn.fileno())
        conn.close()
        self.conn = None
        self.peer = None
        self._pending = None
        self.reader.reset()

    def _drop_conn(self) -> None:
        """The connection ended (EOF, error, bad framing): close it and carry on."""
        self._close_conn()
        if not self.closed:
            self._lost()

    def _lost(self) -> None:
        raise NotImplementedError

    def _conn_event(self) -> None:
        if self._pending is not None:
            self._flush()
        self.receive(self, self.on_readable())

    def on_readable(self) -> Iterator[bytes]:
        conn = self.conn
        if conn is None:
            return
        reader = self.reader
        view = self._rview
        for _ in range(BATCH):
            if self.conn is not conn:
                return  # replaced or closed by the consumer meanwhile
            try:
                n = conn.recv_into(self._rbuf)
            except BlockingIOError:
                return
            except OSError:
                self.rx_errors += 1
                self._drop_conn()
                return
            if n == 0:
                self._drop_conn()
                return
            runts = reader.runts
            try:
                frames = reader.feed(view[:n])
            except FramingError as e:
                self.framing_errors += 1
                self._drop_conn()
                frames = e.frames
                n = 0  # deliver what came before the bad length, then stop
            self.rx_runts += reader.runts - runts
            for frame in frames:
                self.rx_packets += 1
                self.rx_bytes += len(frame)
                yield frame
            if n < STREAM_READ:
                return  # drained: spare the recv that would say EAGAIN

    # -- sending

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        conn = self.conn
        if conn is None:
            self.tx_down += 1
            return False
        if self._pending is not None and not self._flush():
            if self.conn is None:
                self.tx_down += 1
            else:
                self.tx_busy += 1
            return False
        n = len(frame)
        try:
            sent = conn.sendmsg((n.to_bytes(4, "big"), frame))
        except BlockingIOError:
            self.tx_busy += 1
            return False
        except OSError:
            self.tx_errors += 1
            self._drop_conn()
            return False
        self.tx_packets += 1
        self.tx_bytes += n
        if sent < n + 4:
            self._pending = memoryview(stream_encode(frame))[sent:]
            self.reactor.watch(conn.fileno(), self._conn_event, select.EPOLLIN | select.EPOLLOUT)
        return True

    def _flush(self) -> bool:
        """Send what is left of a partly sent frame; True once all of it is out."""
        conn, pending = self.conn, self._pending
        if conn is None or pending is None:
            return pending is None
        try:
            sent = conn.send(pending)
        except BlockingIOError:
            return False
        except OSError:
            self.tx_errors += 1
            self._drop_conn()
            return False
        if sent < len(pending):
            self._pending = pending[sent:]
            return False
        self._pending = None
        self.reactor.watch(conn.fileno(), self._conn_event, select.EPOLLIN)
        return True

    def filenos(self) -> list[int]:
        return [self.conn.fileno()] if self.conn is not None else []


class TcpListenEndpoint(_StreamEndpoint):
    """`(endpoint tcp-listen ADDR)`: QEMU `-netdev stream,server=off` / `socket,connect=`,
    libvirt `type='client'` (the VM is the client).  `listening` until a client
    connects; every new client replaces the one before."""

    def __init__(self, spec: EndpointSpec, reactor: Reactor, receive: Receive) -> None:
        super().__init__(spec, reactor, receive)
        self.listener: socket.socket | None = None
        self.replaced = 0

    def start(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Lets a restarted vnetd bind while its old connections sit in TIME_WAIT;
        # a second live listener on the port still fails (EADDRINUSE).
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.setblocking(False)
        self._bind(ls, self.spec.local)  # type: ignore[arg-type]
        try:
            ls.listen(4)
        except OSError as e:
            ls.close()
            raise DatapathError.from_os_error(e, f"endpoint {self.spec}: cannot listen") from None
        self.listener = ls
        self.reactor.watch(ls.fileno(), self._accept)
        self.state = "listening"

    def _accept(self) -> None:
        ls = self.listener
        while ls is not None:
            try:
                conn, peer = ls.accept()
            except BlockingIOError:
                return
            except OSError:
                self.rx_errors += 1  # ECONNABORTED and the like: the client is gone
                return
            if self.conn is not None:
                self.replaced += 1
                self._close_conn()
            self._adopt(conn, peer)

    def _lost(self) -> None:
        self.state = "listening"

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "replaced": self.replaced}

    def filenos(self) -> list[int]:
        return ([self.listener.fileno()] if self.listener is not None else []) + super().filenos()

    def close(self) -> None:
        self.closed = True
        self._close_conn()
        if self.listener is not None:
            self.reactor.unwatch(self.listener.fileno())
            self.listener.close()
            self.listener = None
        self.state = "waiting"


class TcpConnectEndpoint(_StreamEndpoint):
    """`(endpoint tcp-connect ADDR)`: QEMU `-netdev stream,server=on` / `socket,listen=`,
    libvirt `type='server'` (the VM is the server).  `waiting` between attempts,
    which never stop while the endpoint exists."""

    def __init__(self, spec: EndpointSpec, reactor: Reactor, receive: Receive) -> None:
        super().__init__(spec, reactor, receive)
        assert spec.remote is not None
        self.remote = spec.remote
        self.connecting: socket.socket | None = None
        self.backoff = BACKOFF_MIN
        self.attempts = 0
        self._gen = 0  # bumped by every attempt and by close(): stale timers do nothing
        self._rx_at_connect = 0

    def start(self) -> None:
        self._attempt()

    def _attempt(self) -> None:
        if self.closed or self.conn is not None:
            return
        self._gen += 1
        gen = self._gen
        self.attempts += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(self.remote)
        if err == 0:
            self._adopt(sock, self.remote)
        elif err == errno.EINPROGRESS:
            self.connecting = sock
            self.reactor.watch(sock.fileno(), lambda: self._connect_done(sock),
                               select.EPOLLOUT)
            self.reactor.call_at(time.monotonic() + CONNECT_TIMEOUT,
                                 lambda: self._connect_timeout(gen))
        else:
            sock.close()
            self._retry()

    def _connect_done(self, sock: socket.socket) -> None:
        if sock is not self.connecting:
            return
        self.reactor.unwatch(sock.fileno())
        self.connecting = None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self._retry()
            return
        self._adopt(sock, self.remote)

    def _connect_timeout(self, gen: int) -> None:
        if gen != self._gen or self.connecting is None:
            return
        sock, self.connecting = self.connecting, None
        self.reactor.unwatch(sock.fileno())
        sock.close()
        self._retry()

    def _retry(self) -> None:
        """Try again after the backoff, which doubles up to BACKOFF_MAX."""
        self.state = "waiting"
        gen = self._gen
        self.reactor.call_at(time.monotonic() + self.backoff, lambda: self._timer(gen))
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def _timer(self, gen: int) -> None:
        if gen == self._gen and not self.closed:
            self._attempt()

    def _lost(self) -> None:
        # A connection that carried frames was a good one: come back quickly.  One
        # that ended before any frame (a QEMU that accepts and closes) keeps the
        # backoff growing, so the loop never spins.
        if self.rx_packets > self._rx_at_connect:
            self.backoff = BACKOFF_MIN
        self._retry()

    def _adopt(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        super()._adopt(conn, peer)
        self._rx_at_connect = self.rx_packets

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "attempts": self.attempts}

    def filenos(self) -> list[int]:
        return ([self.connecting.fileno()] if self.connecting is not None else []) + super().filenos()

    def close(self) -> None:
        self.closed = True
        self._gen += 1
        self._close_conn()
        if self.connecting is not None:
            self.reactor.unwatch(self.connecting.fileno())
            self.connecting.close()
            self.connecting = None
        self.state = "waiting"


_CLASSES: dict[str, type[Endpoint]] = {
    "udp": UdpEndpoint,
    "tcp-listen": TcpListenEndpoint,
    "tcp-connect": TcpConnectEndpoint,
}


def open_endpoint(spec: EndpointSpec, reactor: Reactor, receive: Receive) -> Endpoint:
    """The endpoint `spec` describes, started (see Endpoint.start for its errors)."""
    ep = _CLASSES[spec.kind](spec, reactor, receive)
    ep.start()
    return ep


class EndpointAttachment(Attachment):
    """An endpoint as one of its vnet's local attachments (vnet.datapath.vnetd.attach):
    the packet rules switch to and from it as to a port.  The endpoint keeps its own
    sockets watched (they change under it), so `fd` is unused (-1); the daemon hands
    what it reads to Transmit through `framed`, behind the all-zero virtio-net header
    every attachment's frames carry.  What goes to the VM must be plain frames with
    complete checksums, as QEMU hands them to the guest: a super-frame is cut into
    segments of the vnet's MTU (offload.segment), a partial checksum finished.
    `rx_*`/`tx_*` here are what Transmit.switch counts; the endpoint's own counters
    (`ep.counters()`) are the ones listed."""

    __slots__ = ("ep", "send", "spec", "taps")

    def __init__(self, spec: EndpointSpec) -> None:
        super().__init__(str(spec), -1)
        self.spec = spec
        self.ep: Endpoint | None = None
        #: What writes a frame to the VM: the endpoint's send, or while a capture
        #: is open (vnet.datapath.vnetd.capture) one that shows it to the capture first.
        self.send: Callable[[bytes | bytearray | memoryview], bool] = self._not_open
        #: The open captures' callbacks, tap(outbound, frame); empty costs nothing.
        self.taps: list[Callable[[bool, memoryview], None]] = []

    @staticmethod
    def _not_open(_frame) -> bool:
        return False

    def framed(self, frames: Iterator) -> Iterator:
        """The endpoint's frames behind the header: read there if it can (udp), else
        copied behind it."""
        if not self.ep.with_hdr:  # type: ignore[union-attr]
            frames = (ZERO_HDR + frame for frame in frames)
        return self._tapped(frames) if self.taps else frames

    def _tapped(self, frames: Iterator) -> Iterator:
        for raw in frames:
            view = memoryview(raw)[VNET_HDR_LEN:]
            for tap in self.taps:
                tap(False, view)
            yield raw

    def _tapped_send(self, frame) -> bool:
        for tap in self.taps:
            tap(True, frame)
        return self.ep.send(frame)  # type: ignore[union-attr]

    def add_tap(self, tap: Callable[[bool, memoryview], None]) -> None:
        self.taps.append(tap)
        self.send = self._tapped_send

    def remove_tap(self, tap: Callable[[bool, memoryview], None]) -> None:
        if tap in self.taps:
            self.taps.remove(tap)
        if not self.taps and self.ep is not None:
            self.send = self.ep.send

    def open(self, reactor: Reactor, receive: Receive) -> None:
        """Open the endpoint (see Endpoint.start for its errors); `receive` gets its
        frames behind the header through `framed`."""
        ep = self.ep = open_endpoint(self.spec, reactor, receive)
        ep.with_hdr = ep.HEADER_ROOM
        self.send = self._tapped_send if self.taps else ep.send

    def write(self, hdr: bytes, frame) -> None:
        if hdr[1]:  # a super-frame from the network, marked for segmentation
            self._send_segments(hdr + frame)
        else:
            self.send(frame)

    def write_raw(self, raw) -> None:
        """A frame another attachment gave, its virtio-net header in front."""
        if raw[1]:
            self._send_segments(raw)
        elif raw[0] & 1:  # a partial checksum the VM cannot finish
            self.send(finish_checksum(raw))
        else:
            self.send(memoryview(raw)[VNET_HDR_LEN:])

    def _send_segments(self, raw) -> None:
        segs = segment(raw)
        send = self.send
        if segs is None:  # GSO of a kind we cannot cut: the frame as it is
            send(finish_checksum(raw) if raw[0] & 1 else memoryview(raw)[VNET_HDR_LEN:])
            return
        for seg in segs:
            send(seg)

    def close(self) -> None:
        if self.ep is not None:
            self.ep.close()
