"""QEMU's socket NIC framing: what a VM's `-netdev dgram|stream|socket` puts on a socket.

Read from QEMU's own sources (net/dgram.c, net/stream.c, net/stream_data.c,
net/socket.c, and `net_fill_rstate` in net/net.c), the same for every QEMU since the
old `-net socket` and for libvirt's `type='udp'|'server'|'client'` interfaces:

* datagram sockets (`dgram`, `socket,udp=`, `socket,mcast=`): one Ethernet frame per
  datagram, nothing before it: no header, no FCS, no vnet (virtio) header;
* stream sockets (`stream`, `socket,listen=|connect=`): each frame preceded by its
  length as a 4-byte big-endian unsigned integer, frames back to back.

QEMU's receiver keeps a buffer of NET_BUFSIZE (4096 + 65536) bytes and, given a longer
length, prints "oversized packet received, connection terminated" and closes the
connection: after a length it cannot trust, a stream has no way to find the next
frame.  `StreamReader` does the same with `MAX_FRAME`, so a frame QEMU could have sent
is always taken and a corrupt stream is always cut.  A length shorter than an
Ethernet header (QEMU itself never sends one) is skipped whole: the stream stays in
step, the frame is counted as a runt and is not delivered.
"""
from __future__ import annotations

__all__ = [
    "ETH_HEADER",
    "LENGTH_SIZE",
    "MAX_FRAME",
    "FramingError",
    "StreamReader",
    "frame_length",
    "stream_encode",
]

#: Bytes of the length prefix on a stream socket.
LENGTH_SIZE = 4
#: QEMU's NET_BUFSIZE: the longest frame its stream receiver accepts (a 64 KiB GSO
#: frame plus room for headers); a longer length ends the connection there and here.
MAX_FRAME = 4096 + 65536
#: An Ethernet header: destination, source, ethertype.  Shorter is not a frame.
ETH_HEADER = 14


class FramingError(ValueError):
    """A stream whose next length cannot be a frame: the connection must be cut.

    Not a VnetError: it is met per connection in the datapath, counted there, and never
    shown to a user as a failed command.  `frames` holds the whole frames that came
    before the bad length in the same read: they were sent right and are delivered."""

    def __init__(self, message: str, frames: list[bytes]) -> None:
        super().__init__(message)
        self.frames = frames


def frame_length(frame: bytes | bytearray | memoryview) -> bytes:
    """The 4-byte big-endian length QEMU puts before `frame` on a stream socket."""
    return len(frame).to_bytes(LENGTH_SIZE, "big")


def stream_encode(frame: bytes | bytearray | memoryview) -> bytes:
    """`frame` as it travels on a stream socket (a copy: for tests and tools; the
    datapath sends the length and the frame as two buffers of one sendmsg)."""
    return frame_length(frame) + bytes(frame)


class StreamReader:
    """Cuts a byte stream into frames, whatever pieces recv() returns it in.

    `feed(data)` returns the frames completed by `data` (possibly none: a frame or
    even its length may be split across any number of reads) and keeps the rest.
    It raises FramingError for a length above `max_frame` (with the frames before
    it), after which the reader holds nothing and the connection should be closed.  `runts` counts the frames
    shorter than an Ethernet header that were skipped.

    Reads are expected to be large (one recv of up to 256 KiB holds many frames), so
    the buffer is compacted once per feed, not once per frame."""

    __slots__ = ("_buf", "max_frame", "runts")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.runts = 0
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of a frame (or length) not yet complete."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame: a new connection starts on a length."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        end = len(buf)
        pos = 0
        while end - pos >= LENGTH_SIZE:
            n = int.from_bytes(buf[pos:pos + LENGTH_SIZE], "big")
            if n > self.max_frame:
                buf.clear()
                raise FramingError(
                    f"stream frame length {n} is more than {self.max_frame} bytes "
                    "(QEMU's own limit): not QEMU's framing, or a corrupt stream", frames)
            start = pos + LENGTH_SIZE
            if end - start < n:
                break
            if n < ETH_HEADER:
                self.runts += 1
            else:
                frames.append(bytes(buf[start:start + n]))
            pos = start + n
        if pos:
            del buf[:pos]
        return frames
