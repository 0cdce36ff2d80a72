"""A pcapng writer for what `vn capture` needs: a section header with a comment,
interface blocks with names and descriptions, enhanced packet blocks with direction
flags and comments (the pcapng draft, IETF opsawg-pcapng).

Small enough to keep here: the pcapng packages on PyPI are unmaintained or read more
than they write; this one is checked by tshark itself (tests/netns/test_capture.py).
Timestamps are in nanoseconds (if_tsresol 9)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

SHB, IDB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT = 0, 1
SHB_OS, SHB_USERAPPL = 3, 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
EPB_FLAGS = 2
LINKTYPE_ETHERNET = 1
#: epb_flags bits 0-1: the direction of the packet.
INBOUND, OUTBOUND = 1, 2

_U32 = struct.Struct("=I")
_OPT = struct.Struct("=HH")
_EPB = struct.Struct("=IIIIIII")


def _pad(n: int) -> int:
    return -n & 3


def option(code: int, value: bytes) -> bytes:
    return _OPT.pack(code, len(value)) + value + bytes(_pad(len(value)))


def _options(opts: list[bytes]) -> bytes:
    return b"".join(opts) + _OPT.pack(OPT_END, 0) if opts else b""


def block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return _U32.pack(kind) + _U32.pack(total) + body + _U32.pack(total)


def section_header(comment: str, os_name: str = "", app: str = "") -> bytes:
    opts = [option(OPT_COMMENT, comment.encode())]
    if os_name:
        opts.append(option(SHB_OS, os_name.encode()))
    if app:
        opts.append(option(SHB_USERAPPL, app.encode()))
    body = struct.pack("=IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return block(SHB, body)


@dataclass(frozen=True)
class Interface:
    name: str
    description: str
    snaplen: int = 262144
    linktype: int = LINKTYPE_ETHERNET


def interface_block(intf: Interface) -> bytes:
    opts = [option(IF_NAME, intf.name.encode()), option(IF_DESCRIPTION, intf.description.encode()),
            option(IF_TSRESOL, b"\x09")]
    return block(IDB, struct.pack("=HHI", intf.linktype, 0, intf.snaplen) + _options(opts))


def packet_block(interface: int, ts_ns: int, frame, snaplen: int, flags: int = 0,
                 comment: str | None = None) -> bytes:
    """An enhanced packet block: `frame` cut to `snaplen`, its original length kept."""
    data = bytes(frame[:snaplen])
    opts = []
    if flags:
        opts.append(option(EPB_FLAGS, _U32.pack(flags)))
    if comment:
        opts.append(option(OPT_COMMENT, comment.encode()))
    tail = bytes(_pad(len(data))) + _options(opts)
    total = 32 + len(data) + len(tail)
    return b"".join((_EPB.pack(EPB, total, interface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), len(frame)),
                     data, tail, _U32.pack(total)))
