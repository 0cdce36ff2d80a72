"""vnetd's control server: the root-only Unix socket `vn` talks to (vnet.control.protocol).

It runs in the event loop's thread, between batches of packets, so a command never
races the packet rules: a connection's request is read until the client shuts down
its side, evaluated with the command language against the datapath, and answered.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
from pathlib import Path

import sxp
from vnet.control import language
from vnet.control.datapath import Datapath
from vnet.control.protocol import MAX_REQUEST, encode_replies, error_reply, ok_reply
from vnet.datapath.vnetd.loop import Loop
from vnet.errors import DatapathError

log = logging.getLogger("vnetd")

#: Seconds a client that does not read its reply may hold up the loop.
REPLY_TIMEOUT = 2.0


class ControlServer:
    """Listens on `path` once listen() was called; every command runs on `datapath`."""

    def __init__(self, loop: Loop, datapath: Datapath) -> None:
        self.loop = loop
        self.datapath = datapath
        self.path: Path | None = None
        self.sock: socket.socket | None = None
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}

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
                conn.sendall(encode_replies([error_reply(DatapathError("EPERM", "vnetd accepts commands from root only"))]))
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
            replies = [error_reply(DatapathError("E2BIG", f"request larger than {MAX_REQUEST} bytes"))]
        else:
            replies = self.evaluate(bytes(data))
        self.loop.unwatch(fd)
        del self.conns[fd]
        try:
            conn.setblocking(True)
            conn.settimeout(REPLY_TIMEOUT)
            conn.sendall(encode_replies(replies))
        except OSError:
            pass
        conn.close()

    def evaluate(self, data: bytes) -> list[sxp.Value]:
        """One reply per command, stopping at the first that fails."""
        try:
            exprs = sxp.parse(data.decode("utf-8"), source="request")
        except (sxp.SxpError, UnicodeDecodeError) as e:
            return [error_reply(DatapathError("EINVAL", str(e)))]
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
