"""vnetd's control server: the root-only Unix socket `vn` talks to (vnet.control.protocol).

It runs in the event loop's thread, between batches of packets, so a command never
races the packet rules: a connection's request is read until the client shuts down
its side, evaluated with the command language against the datapath, and answered.

A request that is one *stream command* (registered by the daemon in `streams`: the
events of `vn monitor`, the frames of `vn capture`) instead keeps its connection open
as a `Stream` that vnetd writes to for as long as the client reads
(vnet.control.protocol.stream is the client side).
"""
from __future__ import annotations

import logging
import os
import select
import socket
import struct
from collections import deque
from collections.abc import Callable
from pathlib import Path

import sxp
from vnet.control import language
from vnet.control.datapath import Datapath
from vnet.control.protocol import (
    MAX_REQUEST,
    encode_replies,
    error_reply,
    frame_message,
    ok_reply,
)
from vnet.datapath.vnetd.loop import Loop
from vnet.errors import DatapathError

log = logging.getLogger("vnetd")

#: Seconds a client that does not read its reply may hold up the loop.
REPLY_TIMEOUT = 2.0
#: Bytes a stream may hold for a client that reads slower than vnetd writes; beyond
#: this, messages are dropped (and counted) rather than stall the datapath.
STREAM_BUFFER = 4 << 20


class Stream:
    """A client's open subscription.  vnetd never waits for it: send() queues the
    message and writes what the socket takes now, the loop writes the rest when the
    socket drains, and a message that would overflow STREAM_BUFFER is dropped and
    counted in `dropped` (a slow `vn capture` loses frames; the vnet loses nothing)."""

    def __init__(self, loop: Loop, conn: socket.socket) -> None:
        self.loop = loop
        self.conn = conn
        self.fd = conn.fileno()
        self.queue: deque[memoryview] = deque()
        self.queued = 0
        self.dropped = 0
        self.closed = False
        self.events = 0  # what the loop watches the socket for (see _flush)
        #: Called once when the stream ends (the client went away, or vnetd closes it):
        #: the subscriber unregisters itself here.
        self.on_close: list[Callable[[], None]] = []

    def start(self, first: bytes) -> None:
        """Send the reply that opens the stream and watch for the client leaving."""
        self.loop.watch(self.fd, self._ready, 0)
        self.send(first)

    def send(self, payload: bytes) -> bool:
        """Queue one message; False if it was dropped or the stream is closed."""
        if self.closed:
            return False
        msg = frame_message(payload)
        if self.queued + len(msg) > STREAM_BUFFER:
            self.dropped += 1
            return False
        was_empty = not self.queue
        self.queue.append(memoryview(msg))
        self.queued += len(msg)
        if was_empty:
            self._flush()
        return True

    def _flush(self) -> None:
        while self.queue:
            head = self.queue[0]
            try:
                n = self.conn.send(head)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                return
            self.queued -= n
            if n == len(head):
                self.queue.popleft()
            else:
                self.queue[0] = head[n:]
        # Nothing to read: the client shut its side down before the stream opened.
        # So with an empty queue only a hang-up (always reported) wakes _ready.
        events = select.EPOLLOUT if self.queue else 0
        if events != self.events:  # an epoll change only when it differs, not per message
            self.events = events
            self.loop.watch(self.fd, self._ready, events)

    def _ready(self) -> None:
        if not self.queue:
            self.close()  # a hang-up: the client is gone
            return
        self._flush()  # a hang-up with messages queued fails the send, which closes

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.unwatch(self.fd)
        self.conn.close()
        self.queue.clear()
        for fn in self.on_close:
            fn()


class ControlServer:
    """Listens on `path` once listen() was called; every command runs on `datapath`."""

    def __init__(self, loop: Loop, datapath: Datapath) -> None:
        self.loop = loop
        self.datapath = datapath
        self.path: Path | None = None
        self.sock: socket.socket | None = None
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        #: Stream commands by name: handler(command, stream) subscribes the stream or
        #: raises DatapathError, which the client gets as the reply.
        self.streams: dict[str, Callable[[sxp.Value, Stream], None]] = {}
        self.open_streams: set[Stream] = set()

    def listen(self, path: Path) -> None:
        """Serve on `path` (mode 0600), taking it over from a vnetd that died but
        refusing it while another one answers there."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatapathError.from_os_error(e, f"cannot make {path.parent}") from None
        if path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()
            else:
                raise DatapathError("EADDRINUSE", f"another vnetd is serving {path}")
            finally:
                probe.close()
        old = os.umask(0o077)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            ls.bind(str(path))
        except OSError as e:
            ls.close()
            raise DatapathError.from_os_error(e, f"cannot listen on {path}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        ls.listen(16)
        ls.setblocking(False)
        self.sock = ls
        self.path = path
        self.loop.watch(ls.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
            if uid != 0:
                try:
                    conn.setblocking(False)  # a refusal that does not fit is not waited for
                    conn.send(encode_replies([error_reply(DatapathError("EPERM", "vnetd accepts commands from root only"))]))
                except OSError:
                    pass  # it hung up already (`vn` probes with a bare connect): nothing to tell
                conn.close()
                continue
            conn.setblocking(False)
            fd = conn.fileno()
            self.conns[fd] = (conn, bytearray())
            self.loop.watch(fd, lambda fd=fd: self._readable(fd))

    def _readable(self, fd: int) -> None:
        conn, data = self.conns[fd]
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
            data.clear()
        if chunk:
            data += chunk
            if len(data) <= MAX_REQUEST:
                return
        self.loop.unwatch(fd)
        del self.conns[fd]
        if chunk:
            replies = [error_reply(DatapathError("E2BIG", f"request larger than {MAX_REQUEST} bytes"))]
        else:
            try:
                exprs = sxp.parse(data.decode("utf-8"), source="request")
            except (sxp.SxpError, UnicodeDecodeError) as e:
                replies = [error_reply(DatapathError("EINVAL", str(e)))]
            else:
                if len(exprs) == 1 and isinstance(exprs[0], list) and exprs[0] and exprs[0][0] in self.streams:
                    self._open_stream(conn, exprs[0])
                    return
                replies = self.evaluate(exprs)
        self._reply(conn, encode_replies(replies))

    def _reply(self, conn: socket.socket, reply: bytes) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(REPLY_TIMEOUT)
            conn.sendall(reply)
        except OSError:
            pass
        conn.close()

    def _open_stream(self, conn: socket.socket, command: sxp.Value) -> None:
        """Everything on a stream is a framed message, the opening reply included."""
        stream = Stream(self.loop, conn)
        try:
            self.streams[command[0]](command, stream)
        except DatapathError as e:
            self._reply(conn, frame_message(encode_replies([error_reply(e)])))
            return
        except Exception as e:  # a bug must not kill the datapath; the caller hears of it
            log.exception("stream command failed: %s", sxp.show(command))
            stream.on_close.clear()
            self._reply(conn, frame_message(encode_replies([error_reply(DatapathError("EIO", f"internal error: {e}"))])))
            return
        self.open_streams.add(stream)
        stream.on_close.append(lambda: self.open_streams.discard(stream))
        stream.start(encode_replies([ok_reply([])]))

    def evaluate(self, exprs: list[sxp.Value]) -> list[sxp.Value]:
        """One reply per command, stopping at the first that fails."""
        replies = []
        for expr in exprs:
            try:
                replies.append(ok_reply(language.evaluate(self.datapath, expr)))
            except DatapathError as e:
                replies.append(error_reply(e))
                break
            except Exception as e:  # a bug must not kill the datapath; the caller hears of it
                log.exception("command failed: %s", sxp.show(expr))
                replies.append(error_reply(DatapathError("EIO", f"internal error: {e}")))
                break
        return replies

    def close(self) -> None:
        """Stop serving: the listening socket and its path, and any open connection."""
        if self.sock is not None:
            self.sock.close()
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        for conn, _ in self.conns.values():
            conn.close()
        self.conns.clear()
        for stream in list(self.open_streams):
            stream.close()
