"""One `vn capture`: packet sockets on the vnet's interfaces, the datapath's capture
stream for its socket endpoints, one pcapng file out.

Every interface point is read with an AF_PACKET socket of `vn` itself, with the
compiled filter attached in the kernel before the socket is bound (an idle capture
costs the vnet nothing: frames that do not match are not copied), on both datapaths.
A frame's direction comes from the socket (PACKET_OUTGOING: the interface sent it)
and is written as seen from the vnet (pcapng.INBOUND: it entered the vnet there).
Everything that can fail on bad input (the filter, the vnet, the points, vnetd's
answer) fails before the output is opened, so no half-written file is left.
"""
from __future__ import annotations

import os
import queue
import selectors
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vnet.capture import pcapng
from vnet.capture.bpf import SNAPLEN, Program
from vnet.capture.points import Point
from vnet.capture.underlay import Opener
from vnet.control import protocol
from vnet.errors import VnetError

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
#: The socket buffer of each packet socket: bursts wait here while a slow reader writes.
RCVBUF = 4 << 20
#: Frames read from one socket before looking at the others.
BATCH = 64
#: ts (ns), point, outbound, dropped so far: vnet.datapath.vnetd.capture.MESSAGE.
STREAM_MSG = struct.Struct("!QHBI")
_TIMESPEC = struct.Struct("@ll")
_STATS = struct.Struct("@II")


class CaptureError(VnetError):
    """A capture that cannot start or cannot go on."""


@dataclass
class Result:
    written: int = 0
    kernel_dropped: int = 0
    #: by vnetd's capture stream for a slow reader, or the module's group's overruns
    stream_dropped: int = 0
    stopped_by: str = ""
    notes: list[str] = field(default_factory=list)


class Output:
    """Where the pcapng goes: a file (written through a buffer), or stdout, written
    per packet when it is a pipe so that `| tshark -r -` sees each one at once."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        if path is None:
            if os.isatty(1):
                raise CaptureError("will not write pcapng to a terminal: give -w FILE, or pipe it "
                                   "(vn capture 97 | tshark -r -)")
            self.fd = 1
            self.per_packet = not stat.S_ISREG(os.fstat(1).st_mode)
        else:
            self.fd = -1
            self.per_packet = False
        self.buf = bytearray()

    def open(self) -> None:
        if self.path is not None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data: bytes) -> None:
        self.buf += data
        if self.per_packet or len(self.buf) >= 1 << 16:
            self.flush()

    def flush(self) -> None:
        with memoryview(self.buf) as whole:
            view = whole
            while view:
                view = view[os.write(self.fd, view):]
            view.release()
        self.buf.clear()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.path is not None and self.fd >= 0:
                os.close(self.fd)

    @property
    def name(self) -> str:
        return self.path or "stdout"


def packet_socket(ifname: str, program: Program) -> socket.socket:
    """A packet socket on `ifname` that the kernel hands only frames matching
    `program`: filter attached before the socket is bound to any traffic."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        program.attach(s)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.bind((ifname, ETH_P_ALL))
    except OSError as e:
        s.close()
        raise CaptureError(f"cannot capture on {ifname}: {e.strerror}") from None
    s.setblocking(False)
    return s


class EndpointFeed:
    """The frames of the socket endpoints, from vnetd's capture stream or the module's
    group "capture", read by a thread that queues them (each a STREAM_MSG and the
    frame) and wakes the capture's select with a byte on a pipe.  `source(started)`
    gives the messages: it calls `started` once set up, or its first message is empty
    (vnetd's stream)."""

    def __init__(self, source: Callable[[Callable[[], None]], Iterable[bytes]], who: str,
                 timeout: float = protocol.TIMEOUT) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.who = who
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        self.thread = threading.Thread(target=self._read, args=(source,), daemon=True)
        self.thread.start()
        first = self.queue.get(timeout=timeout + 5)  # the reader's own timeout comes first
        if isinstance(first, BaseException):
            raise first
        if first is None:
            raise CaptureError(f"{who} ended the capture stream before it started")

    @classmethod
    def from_vnetd(cls, path: Path, command: list) -> EndpointFeed:
        return cls(lambda _started: protocol.stream(path, command), "vnetd")

    def _read(self, source: Callable[[Callable[[], None]], Iterable[bytes]]) -> None:
        try:
            for msg in source(lambda: self.queue.put(b"")):
                self.queue.put(msg)
                os.write(self.wfd, b"m")
        except Exception as e:  # a VnetError, or a bug: the capture says so, never waits
            self.queue.put(e)
        self.queue.put(None)
        try:
            os.write(self.wfd, b"e")
        except OSError:
            pass

    def messages(self) -> list:
        try:
            os.read(self.rfd, 65536)
        except BlockingIOError:
            pass
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out


class Session:
    """The points opened, the pcapng written: `run` until a stop condition."""

    def __init__(self, output: Output, section_comment: str,
                 interfaces: list[tuple[Point | None, pcapng.Interface]], program: Program,
                 snaplen: int = SNAPLEN, endpoint_feed: Callable[[], EndpointFeed] | None = None,
                 opener: Opener | None = None) -> None:
        """`interfaces`: the pcapng interfaces in order, each with the point it shows
        (None: the last one, where --decrypt writes the frames it opened)."""
        self.output = output
        self.snaplen = snaplen
        self.opener = opener
        self.sockets: list[tuple[socket.socket, int]] = []
        self.feed: EndpointFeed | None = None
        self.endpoint_index: list[int] = []
        self.result = Result()
        header = [pcapng.section_header(section_comment, "Linux", "vn capture")]
        try:
            for index, (point, intf) in enumerate(interfaces):
                header.append(pcapng.interface_block(intf))
                if point is None:
                    continue
                if point.ifname is not None:
                    self.sockets.append((packet_socket(point.ifname, program), index))
                else:
                    self.endpoint_index.append(index)
            if self.endpoint_index:
                assert endpoint_feed is not None
                self.feed = endpoint_feed()
        except BaseException:
            self.close_sockets()
            raise
        self.header = b"".join(header)
        self.opened_index = len(interfaces) - 1

    def close_sockets(self) -> None:
        for s, _ in self.sockets:
            s.close()
        self.sockets = []

    def run(self, count: int | None, duration: float | None) -> Result:
        r = self.result
        out = self.output
        out.open()
        sel = selectors.DefaultSelector()
        for s, index in self.sockets:
            sel.register(s, selectors.EVENT_READ, (s, index))
        if self.feed is not None:
            sel.register(self.feed.rfd, selectors.EVENT_READ, None)
        deadline = None if duration is None else time.monotonic() + duration
        old_term = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
        try:
            out.write(self.header)
            out.flush()
            while r.stopped_by == "":
                if count is not None and r.written >= count:
                    r.stopped_by = f"after {count} packets"
                    break
                timeout = None
                if deadline is not None:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        r.stopped_by = f"after {duration:g} s"
                        break
                for key, _ in sel.select(timeout):
                    if key.data is None:
                        self._from_feed(count, sel)
                    elif not self._from_socket(*key.data, count):
                        sel.unregister(key.fileobj)
                    if count is not None and r.written >= count:
                        break
                if not sel.get_map():
                    r.stopped_by = "every capture point is gone"
        except KeyboardInterrupt:
            # What the kernel queued before the signal is part of the capture.
            r.stopped_by = "interrupted"
            try:
                self._drain(count)
            except (KeyboardInterrupt, BrokenPipeError):
                pass
        except BrokenPipeError:
            r.stopped_by = "the reader closed the pipe"
        finally:
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
            for s, _ in self.sockets:
                try:
                    packets_dropped = _STATS.unpack(s.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
                    r.kernel_dropped += packets_dropped[1]
                except OSError:
                    pass
            self.close_sockets()
            sel.close()
            try:
                out.close()
            except BrokenPipeError:
                r.stopped_by = r.stopped_by or "the reader closed the pipe"
        return r

    def _drain(self, count: int | None) -> None:
        for s, index in self.sockets:
            before = -1
            while self.result.written != before and (count is None or self.result.written < count):
                before = self.result.written
                if not self._from_socket(s, index, count):
                    break

    def _write(self, index: int, ts: int, frame, outbound: bool) -> None:
        flags = pcapng.OUTBOUND if outbound else pcapng.INBOUND
        comment = None
        if self.opener is not None:
            inner, note = self.opener.open(bytes(frame))
            if inner is not None:
                index, frame, comment = self.opened_index, inner, note
        self.output.write(pcapng.packet_block(index, ts, frame, self.snaplen, flags, comment))
        self.result.written += 1

    def _from_socket(self, s: socket.socket, index: int, count: int | None) -> bool:
        """Write what `s` has (a batch at most); False if it cannot be read any more."""
        for _ in range(BATCH):
            try:
                frame, anc, _flags, addr = s.recvmsg(self.snaplen, socket.CMSG_SPACE(_TIMESPEC.size))
            except BlockingIOError:
                return True
            except OSError as e:  # ENETDOWN: the interface went down or away
                self.result.notes.append(f"stopped reading {addr_name(s)}: {e.strerror}")
                return False
            ts = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec * 1_000_000_000 + nsec
            self._write(index, ts or time.time_ns(), frame, addr[2] == PACKET_OUTGOING)
            if count is not None and self.result.written >= count:
                break
        return True

    def _from_feed(self, count: int | None, sel: selectors.BaseSelector) -> None:
        assert self.feed is not None
        for msg in self.feed.messages():
            if msg is None or isinstance(msg, BaseException):
                self.result.notes.append(f"{self.feed.who} ended the endpoints' capture stream ({msg or 'closed'})")
                sel.unregister(self.feed.rfd)
                return
            if count is not None and self.result.written >= count:
                continue
            ts, point, outbound, dropped = STREAM_MSG.unpack_from(msg)
            self.result.stream_dropped = max(self.result.stream_dropped, dropped)
            self._write(self.endpoint_index[point], ts, memoryview(msg)[STREAM_MSG.size:], bool(outbound))


def addr_name(s: socket.socket) -> str:
    try:
        return str(s.getsockname()[0])
    except OSError:
        return "a socket"


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt
