"""vnetd's metrics endpoint (`vnetd --metrics ADDR:PORT`): GET /metrics over HTTP/1.0.

It runs in the event loop's thread, on non-blocking sockets the loop watches, like
the control server: the page is read from the tables between two batches of packets,
so it needs no lock and a scrape never races the packet rules, and a slow or silent
client cannot hold the loop up (every read and write is non-blocking, a connection
that has not finished within CLIENT_TIMEOUT is closed, and at most MAX_CLIENTS are
open).  A thread would have to lock the tables against the per-packet code, which
takes none today.
"""
from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable

from vnet.control.metrics import CONTENT_TYPE
from vnet.datapath.vnetd.loop import Loop
from vnet.errors import DatapathError
from vnet.model.endpoint import EndpointError, parse_hostport

log = logging.getLogger("vnetd")

#: Seconds a client has to send its request and read the answer.
CLIENT_TIMEOUT = 5.0
#: Open scrape connections at once; a new one beyond that closes the oldest.
MAX_CLIENTS = 16
#: The longest request head read; a scrape's is a few hundred bytes.
MAX_REQUEST = 8192


class _Client:
    __slots__ = ("deadline", "inbuf", "outbuf", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.deadline = deadline


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class MetricsServer:
    """Serves `render()` (the Prometheus page) at /metrics on the address listen() gets."""

    def __init__(self, loop: Loop, render: Callable[[], str]) -> None:
        self.loop = loop
        self.render = render
        self.sock: socket.socket | None = None
        self.address = ""
        self.clients: dict[int, _Client] = {}

    def listen(self, text: str) -> None:
        """Listen on `text` (ADDR:PORT); an address that cannot be had is an error
        naming it, before vnetd serves anything."""
        try:
            addr, port = parse_hostport(text, "--metrics", peer=False)
        except EndpointError as e:
            raise DatapathError("EINVAL", str(e)) from None
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ls.bind((addr, port))
            ls.listen(16)
        except OSError as e:
            ls.close()
            raise DatapathError.from_os_error(e, f"cannot serve metrics on {addr}:{port}") from None
        ls.setblocking(False)
        self.sock = ls
        self.address = f"{addr}:{ls.getsockname()[1]}"
        self.loop.watch(ls.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError:  # the client went away before we got to it
                return
            if len(self.clients) >= MAX_CLIENTS:
                self._close(min(self.clients.values(), key=lambda c: c.deadline))
            conn.setblocking(False)
            client = _Client(conn, time.monotonic() + CLIENT_TIMEOUT)
            self.clients[conn.fileno()] = client
            self.loop.watch(conn.fileno(), lambda c=client: self._readable(c))
            self.loop.call_at(client.deadline, lambda c=client: self._expire(c))

    def _readable(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(client)
            return
        client.inbuf += chunk
        if b"\r\n\r\n" not in client.inbuf and b"\n\n" not in client.inbuf:
            if len(client.inbuf) > MAX_REQUEST:
                self._answer(client, _response("431 Request Header Fields Too Large", b"request too large\n"))
            return
        self._answer(client, self._handle(bytes(client.inbuf)))

    def _handle(self, request: bytes) -> bytes:
        words = request.split(b"\n", 1)[0].split()
        if len(words) < 2:
            return _response("400 Bad Request", b"bad request\n")
        method, path = words[0], words[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"only GET\n")
        if path != b"/metrics":
            return _response("404 Not Found", b"the metrics are at /metrics\n")
        try:
            body = self.render().encode("utf-8")
        except Exception as e:  # a bug must not kill the datapath; the scraper hears of it
            log.exception("metrics page failed")
            return _response("500 Internal Server Error", f"internal error: {e}\n".encode())
        response = _response("200 OK", body, CONTENT_TYPE)
        return response[:len(response) - len(body)] if method == b"HEAD" else response

    def _answer(self, client: _Client, response: bytes) -> None:
        client.outbuf = response
        self.loop.watch(client.sock.fileno(), lambda: self._writable(client), select.EPOLLOUT)
        self._writable(client)

    def _writable(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self._close(client)
            return
        client.outbuf = client.outbuf[sent:]
        if not client.outbuf:
            self._close(client)

    def _expire(self, client: _Client) -> None:
        if self.clients.get(client.sock.fileno()) is client:
            self._close(client)

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd < 0 or self.clients.get(fd) is not client:
            return
        del self.clients[fd]
        self.loop.unwatch(fd)
        client.sock.close()

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        if self.sock is not None:
            self.loop.unwatch(self.sock.fileno())
            self.sock.close()
            self.sock = None
