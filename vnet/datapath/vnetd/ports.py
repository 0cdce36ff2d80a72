"""Ports: interfaces attached to a vnet directly, through AF_PACKET sockets, and the
link monitor that makes ports follow their interfaces (doc/ports.md).

A port's socket takes every frame its interface receives (ETH_P_ALL, promiscuous),
whatever its destination or ethertype, behind a virtio-net header (PACKET_VNET_HDR:
GSO super-frames from a veth arrive whole, as from the tap), and never our own
writes (PACKET_IGNORE_OUTGOING).  The kernel takes a VLAN tag off every received
frame before a packet socket sees it and reports it beside the frame
(PACKET_AUXDATA); the tag is put back, so a tagged frame crosses as it was sent.
Reading the auxiliary data costs a recvmsg() (2.5 us more a frame than a read()),
so only tagged frames take that way (Port).
Promiscuity belongs to the socket: closing it (port-del, vnet-del, exit, kill -9)
releases it, and the interface is left as it is otherwise.

This is the per-packet path (Port.frames, Port.write): no logging.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

from vnet.datapath.vnetd.attach import Attachment
from vnet.datapath.vnetd.loop import Clock, drain
from vnet.datapath.vnetd.offload import VNET_HDR_LEN, ZERO_HDR, segment
from vnet.datapath.vnetd.underlay import attach_filter, big_buffer
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
    """A port whose interface exists: two AF_PACKET sockets bound to it.  Untagged
    frames (most of them) come through `sock`, read with a plain read() as the tap is;
    frames whose VLAN tag the kernel took off come through `tagged`, read with their
    auxiliary data to put the tag back (a socket filter on each sends every frame to
    exactly one; frames of different VLANs may so be reordered, never those of one).
    `sock` also sends.  GSO packets are cut into ordinary frames here if longer than
    `gso_cap` bytes (0: all of them, for a vnet whose encapsulation cannot carry
    super-frames); None leaves that to Transmit."""

    __slots__ = ("sock", "tagged", "ifindex", "buf", "bufs", "mv", "gso_cap", "gone", "link")
    is_port = True

    def __init__(self, name: str, ifindex: int, gso_cap: int | None) -> None:
        sock = tagged = None
        try:
            sock = _packet_socket(name, PLAIN_ONLY)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
            tagged = _packet_socket(name, TAGGED_ONLY)
            tagged.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        except OSError:
            for s in (sock, tagged):
                if s is not None:
                    s.close()
            raise
        super().__init__(name, sock.fileno())
        self.sock = sock
        self.tagged = tagged
        self.ifindex = ifindex
        self.buf = bytearray(PORT_READ)
        self.bufs = [self.buf]
        self.mv = memoryview(self.buf)
        self.gso_cap = gso_cap
        self.gone = False
        #: The port's link control (linkctl.PortLink), None without one: the one test
        #: a frame out of a port without link control pays.
        self.link = None

    def write(self, hdr: bytes, frame) -> None:
        link = self.link
        if link is None:
            os.writev(self.fd, (hdr, frame))
            self.tx_packets += 1
            self.tx_bytes += len(frame)
        else:
            link.send(b"".join((hdr, frame)))

    def write_raw(self, raw) -> None:
        link = self.link
        if link is None:
            os.write(self.fd, raw)
            self.tx_packets += 1
            self.tx_bytes += len(raw) - VNET_HDR_LEN
        else:
            link.send(raw)

    def _read(self) -> bytes:
        try:
            return os.read(self.fd, PORT_READ)
        except OSError as e:
            if e.errno in GONE:  # not a drop: the interface was deleted
                self.gone = True
                raise BlockingIOError from None
            raise

    def _read_tagged(self):
        try:
            n, anc, _flags, _addr = self.tagged.recvmsg_into(self.bufs, AUX_SPACE)
        except OSError as e:
            if e.errno in GONE:
                self.gone = True
                raise BlockingIOError from None
            raise
        if anc:
            status, _l, _s, _m, _n, tci, tpid = AUXDATA.unpack(anc[0][2])
            if status & TP_STATUS_VLAN_VALID:
                return with_tag(self.mv[:n], tci, tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100)
        return self.mv[:n]

    def frames(self, clock: Clock, drops: list[int]) -> Iterator:
        frames = drain(self._read, clock, drops, D_RECV_ERROR)
        return frames if self.gso_cap is None else self._cut(frames)

    def tagged_frames(self, clock: Clock, drops: list[int]) -> Iterator:
        frames = drain(self._read_tagged, clock, drops, D_RECV_ERROR)
        return frames if self.gso_cap is None else self._cut(frames)

    def _cut(self, frames: Iterator) -> Iterator:
        cap = self.gso_cap
        for frame in frames:
            if frame[1] and len(frame) - VNET_HDR_LEN > cap:
                segs = segment(frame)
                if segs is not None:
                    for seg in segs:
                        yield ZERO_HDR + seg
                    continue
            yield frame

    def close(self) -> None:
        self.sock.close()
        self.tagged.close()


#: Classic BPF: load "has the kernel taken a VLAN tag off" (SKF_AD_VLAN_TAG_PRESENT),
#: then take the frame (return 0xffffffff) or leave it (return 0).
_LD_VLAN = (0x20, 0, 0, 0xFFFFF030)  # BPF_LD|BPF_W|BPF_ABS, SKF_AD_OFF + 48
PLAIN_ONLY = (_LD_VLAN, (0x15, 0, 1, 0), (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0))
TAGGED_ONLY = (_LD_VLAN, (0x15, 0, 1, 0), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))


def _packet_socket(name: str, program: tuple) -> socket.socket:
    """A non-blocking packet socket on interface `name` with virtio-net headers,
    that never sees its own sends, taking what `program` takes."""
    # Protocol 0: nothing is queued before bind(), when the filter is in place.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(s, program)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        big_buffer(s)
        s.bind((name, ETH_P_ALL))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


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

