"""Ports: interfaces attached to a vnet directly, through AF_PACKET sockets, and the
link monitor that makes ports follow their interfaces (doc/ports.md).

A port's socket takes every frame its interface receives (ETH_P_ALL, promiscuous),
whatever its destination or ethertype, behind a virtio-net header (PACKET_VNET_HDR:
GSO super-frames from a veth arrive whole, as from the tap), and never our own
writes (PACKET_IGNORE_OUTGOING).  The kernel takes a VLAN tag off every received
frame before a packet socket sees it and reports it beside the frame
(PACKET_AUXDATA); the tag is put back, so a tagged frame crosses as it was sent.
Promiscuity belongs to the socket: closing it (port-del, vnet-del, exit, kill -9)
releases it, and the interface is left as it is otherwise.

This is the per-packet path (Port.frames, Port.write): no logging.
"""
from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

from vnet.datapath.vnetd.attach import Attachment
from vnet.datapath.vnetd.loop import Clock, drain
from vnet.datapath.vnetd.offload import VNET_HDR_LEN, ZERO_HDR, segment
from vnet.datapath.vnetd.underlay import big_buffer
from vnet.host.netdev import SUPER_FRAME_MAX
from vnet.wire.stats import D_RECV_ERROR

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 3
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
#: struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid.
AUXDATA = struct.Struct("IIIHHHH")
AUX_SPACE = socket.CMSG_SPACE(AUXDATA.size)
#: The largest read from a port: a 64 KB GSO packet behind its virtio-net header.
PORT_READ = 65536 + VNET_HDR_LEN + 4
#: Errors of a socket whose interface went away: the link monitor moves it to waiting.
GONE = (errno.ENETDOWN, errno.ENXIO, errno.ENODEV)
_NEEDS_CSUM = 1
_VHDR = struct.Struct("<BBHHHH")


class Port(Attachment):
    """A port whose interface exists: an AF_PACKET socket bound to it.  With
    `segment_gso`, GSO packets are cut into ordinary frames here (a vnet whose
    encapsulation cannot carry super-frames); GSO packets too long for one datagram
    always are."""

    __slots__ = ("sock", "ifindex", "buf", "bufs", "mv", "segment_gso", "gone")
    is_port = True

    def __init__(self, name: str, ifindex: int, segment_gso: bool) -> None:
        # Protocol 0: nothing is queued before bind() names the interface.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            big_buffer(s)
            s.bind((name, ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                         struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        super().__init__(name, s.fileno())
        self.sock = s
        self.ifindex = ifindex
        self.buf = bytearray(PORT_READ)
        self.bufs = [self.buf]
        self.mv = memoryview(self.buf)
        self.segment_gso = segment_gso
        self.gone = False

    def _receive(self):
        try:
            n, anc, _flags, _addr = self.sock.recvmsg_into(self.bufs, AUX_SPACE)
        except OSError as e:
            if e.errno in GONE:  # not a drop: the interface was deleted
                self.gone = True
                raise BlockingIOError from None
            raise
        if anc:
            status, _l, _s, _m, _n, tci, tpid = AUXDATA.unpack(anc[0][2])
            if status & TP_STATUS_VLAN_VALID:
                return with_tag(self.mv[:n], tci, tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100)
        return self.mv[:n]

    def frames(self, clock: Clock, drops: list[int]) -> Iterator:
        for frame in drain(self._receive, clock, drops, D_RECV_ERROR):
            if frame[1] and (self.segment_gso or len(frame) - VNET_HDR_LEN > SUPER_FRAME_MAX):
                segs = segment(frame)
                if segs is not None:
                    for seg in segs:
                        yield ZERO_HDR + seg
                    continue
            yield frame

    def close(self) -> None:
        self.sock.close()


def with_tag(frame: memoryview, tci: int, tpid: int) -> bytes:
    """The frame (behind its virtio-net header) with the VLAN tag the kernel took off
    put back after the MAC addresses; the header's offsets move with it."""
    hdr = bytearray(frame[:VNET_HDR_LEN])
    flags, gso, hdr_len, gso_size, start, offset = _VHDR.unpack_from(hdr)
    if flags & _NEEDS_CSUM:
        start += 4
    if gso:
        hdr_len += 4
    _VHDR.pack_into(hdr, 0, flags, gso, hdr_len, gso_size, start, offset)
    at = VNET_HDR_LEN + 12
    return b"".join((hdr, frame[VNET_HDR_LEN:at], struct.pack("!HH", tpid, tci), frame[at:]))


# ---- the link monitor ---------------------------------------------------------------

RTMGRP_LINK = 1


class LinkMonitor:
    """An rtnetlink socket that hears of every link created, changed, renamed or
    deleted in this namespace.  The daemon only needs to know that something changed
    (it then compares its ports with the links there are), so messages are read and
    dropped, not parsed; an overflow (ENOBUFS) means the same."""

    def __init__(self) -> None:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            s.bind((0, RTMGRP_LINK))
            big_buffer(s)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.sock = s

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> None:
        while True:
            try:
                self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    return

    def close(self) -> None:
        self.sock.close()

