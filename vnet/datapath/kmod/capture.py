"""The module's endpoint frames for `vn capture`: its multicast group "capture".

Socket endpoints have no interface a packet socket could open, so the module sends
each of their frames, both ways, as a VNET_CMD_ENDPOINT_FRAME message on the group
"capture" (kmod/notify.c), only while someone listens.  Those messages are read here
on a plain netlink socket and taken apart with struct, not with pyroute2: a frame
may be 68 KiB (pyroute2 reads 16 KiB at a time) and a busy endpoint sends many.

A full socket buffer makes the kernel drop messages and tell the reader ENOBUFS
once: counted in `EndpointFrame.overruns`, the reader goes on.
"""
from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vnet.datapath.kmod.family import (
    VNET_CAPTURE_DIRECTION_OUT,
    VNET_CMD_ENDPOINT_FRAME,
    VNET_ENDPOINT_KIND_TCP_CONNECT,
    VNET_ENDPOINT_KIND_TCP_LISTEN,
    VNET_ENDPOINT_KIND_UDP,
    vnetmsg,
)
from vnet.model.endpoint import EndpointSpec

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SO_RCVBUFFORCE = 33
#: The socket's receive buffer: frames wait here while `vn capture` writes.
RCVBUF = 8 << 20
#: One message at most: the longest endpoint frame (QEMU's 4096 + 65536) and headers.
BUFSIZE = 1 << 17
_NLMSG = struct.Struct("=IHHII")
_GENL = 4
_NLA = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U64 = struct.Struct("=Q")
_KINDS = {VNET_ENDPOINT_KIND_UDP: "udp", VNET_ENDPOINT_KIND_TCP_LISTEN: "tcp-listen",
          VNET_ENDPOINT_KIND_TCP_CONNECT: "tcp-connect"}
_A = {entry[0]: number for number, entry in enumerate(vnetmsg.nla_map)}
A_ID, A_KIND, A_ADDR, A_PORT = _A["VNET_A_ID"], _A["VNET_A_ENDPOINT_KIND"], _A["VNET_A_ADDR"], _A["VNET_A_PORT"]
A_RADDR, A_RPORT = _A["VNET_A_REMOTE_ADDR"], _A["VNET_A_REMOTE_PORT"]
A_DIRECTION, A_TIME, A_FRAME = _A["VNET_A_CAPTURE_DIRECTION"], _A["VNET_A_TIME_NS"], _A["VNET_A_FRAME"]


@dataclass(frozen=True, slots=True)
class EndpointFrame:
    """One frame of a socket endpoint: `outbound` when the vnet sent it to the VM."""

    vnet: bytes
    endpoint: EndpointSpec
    outbound: bool
    ts: int
    frame: memoryview
    overruns: int


def endpoint_frames(family: int, group: int, opened: Callable[[], None] | None = None) -> Iterator[EndpointFrame]:
    """Every endpoint frame of this namespace's module from now on, blocking between
    them; `opened` is called once subscribed.  Raises PermissionError without
    CAP_NET_ADMIN (the group is its).  A frame's view is valid until the next one."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    try:
        sock.bind((0, 0))
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        if opened is not None:
            opened()
        buf = bytearray(BUFSIZE)
        view = memoryview(buf)
        specs: dict[tuple, EndpointSpec] = {}
        overruns = 0
        while True:
            try:
                n = sock.recv_into(buf)
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                overruns += 1
                continue
            off = 0
            while off + _NLMSG.size <= n:
                length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(buf, off)
                if length < _NLMSG.size or off + length > n:
                    break
                if kind == family and buf[off + _NLMSG.size] == VNET_CMD_ENDPOINT_FRAME:
                    got = _frame(buf, view, off + _NLMSG.size + _GENL, off + length, specs, overruns)
                    if got is not None:
                        yield got
                off += (length + 3) & ~3
    finally:
        sock.close()


def _frame(buf: bytearray, view: memoryview, off: int, end: int, specs: dict[tuple, EndpointSpec],
           overruns: int) -> EndpointFrame | None:
    attrs: dict[int, tuple[int, int]] = {}
    while off + _NLA.size <= end:
        length, number = _NLA.unpack_from(buf, off)
        if length < _NLA.size:
            break
        attrs[number & 0x3FFF] = (off + _NLA.size, off + length)
        off += (length + 3) & ~3
    try:
        vnet = bytes(buf[slice(*attrs[A_ID])])
        key = tuple(bytes(buf[slice(*attrs[a])]) if a in attrs else None
                    for a in (A_KIND, A_ADDR, A_PORT, A_RADDR, A_RPORT))
        direction = buf[attrs[A_DIRECTION][0]]
        (ts,) = _U64.unpack_from(buf, attrs[A_TIME][0])
        frame = view[slice(*attrs[A_FRAME])]
    except KeyError:
        return None
    if key[0] is None:
        return None
    spec = specs.get(key)
    if spec is None:
        spec = specs[key] = _spec(key)
    return EndpointFrame(vnet, spec, direction == VNET_CAPTURE_DIRECTION_OUT, ts, frame, overruns)


def _spec(key: tuple) -> EndpointSpec:
    kind, addr, port, raddr, rport = key

    def place(a: bytes | None, p: bytes | None) -> tuple[str, int] | None:
        return None if a is None or p is None else (socket.inet_ntoa(a), _U16.unpack(p)[0])

    return EndpointSpec(_KINDS.get(kind[0], str(kind[0])), local=place(addr, port), remote=place(raddr, rport))
