"""Capturing frames on a lab switch or node, for tests that check what crossed a wire.

A capture streams every frame as it is seen, and a test waits for the frames it
expects (`Capture.wait_for`) with a generous deadline, rather than capturing for a
fixed time and counting afterwards: under emulation (the kernel-module guest runs
about 20 times slower) a fixed window is sometimes too short, and a test that
depends on it fails at random.

The packet socket is opened in the node's namespace from a short-lived thread
(lab.netns.run_in_ns) and read here, on a thread of this process: no helper
program, whose interpreter start alone costs seconds in the emulated guest.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from lab.lab import Lab, NodeRef
from lab.netns import run_in_ns

SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40

#: How long a test may wait for the frames it expects.  Generous: it is only reached
#: when something is really wrong, and the emulated guest is slow.
DEADLINE = 60.0


def _packet_socket() -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return s


class Capture:
    """Frames seen in a node's namespace (a switch: its bridge ports), from start
    until `stop`; with `sent`, the frames the node itself sends out of that device
    (which may not exist yet); with `received`, the frames it receives on that device.
    A context manager; `frames` grows as frames are seen.

    On a switch, every frame enters the bridge once, on its sender's port: frames seen
    on the bridge device itself or as outgoing copies are left out, so each frame is
    reported once.  The kernel takes a VLAN tag off a received frame before a packet
    socket sees it; it is put back (from PACKET_AUXDATA), so each frame is reported
    as it was on the wire."""

    def __init__(self, lab: Lab, node: NodeRef, bridge: str = "sw0", sent: str | None = None,
                 received: str | None = None) -> None:
        self.frames: list[bytes] = []
        self._lock = threading.Lock()
        if sent is not None:
            self._name, self._mode = sent, "sent"
        elif received is not None:
            self._name, self._mode = received, "received"
        else:
            self._name, self._mode = bridge, "ports"
        self._sock = run_in_ns(lab.ns_of(node), _packet_socket)
        self._wake_r, self._wake_w = os.pipe()
        self._reader = threading.Thread(target=self._read, name="lab-capture", daemon=True)
        self._reader.start()

    def _take(self, ifname: str, pkttype: int) -> bool:
        outgoing = pkttype == socket.PACKET_OUTGOING
        if self._mode == "sent":
            return ifname == self._name and outgoing
        if self._mode == "received":
            return ifname == self._name and not outgoing
        return ifname != self._name and not outgoing

    def _read(self) -> None:
        space = socket.CMSG_SPACE(20)
        left = -1  # after stop: the frames still to read of those queued then
        while left != 0:
            if left < 0 and self._wake_r in select.select([self._sock, self._wake_r], [], [])[0]:
                self._sock.setblocking(False)
                left = 100000  # a bound: a busy link may keep the queue from emptying
            try:
                f, anc, _flags, (ifname, _proto, pkttype, _ha, _addr) = self._sock.recvmsg(65535, space)
            except BlockingIOError:
                return
            left -= left > 0
            if not self._take(ifname, pkttype):
                continue
            for level, kind, data in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _l, _s, _m, _n, tci, tpid = struct.unpack("IIIHHHH", data[:20])
                    if status & TP_STATUS_VLAN_VALID:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                        f = f[:12] + struct.pack("!HH", tpid, tci) + f[12:]
            with self._lock:
                self.frames.append(f)

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self.frames)

    def wait_for(self, done: Callable[[list[bytes]], bool], what: str,
                 timeout: float = DEADLINE) -> list[bytes]:
        """Wait until done(frames seen so far) holds; returns those frames.  Fails
        (AssertionError naming `what`) if it does not hold within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            frames = self.snapshot()
            if done(frames):
                return frames
            if time.monotonic() > deadline:
                raise AssertionError(f"capture: {what} not seen within {timeout:g} s "
                                     f"({len(frames)} frames captured)")
            time.sleep(0.05)

    def stop(self) -> list[bytes]:
        """End the capture; every frame it saw (those queued in the socket included)."""
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
            self._reader.join()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_w = -1
            self._sock.close()
        return self.snapshot()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ipv4_payloads(frames: list[bytes], proto: int = 17,
                  port: int | None = 1798) -> list[tuple[str, str, bytes]]:
    """(source, destination, payload) of the unfragmented IPv4 packets of `proto` in
    Ethernet frames; for UDP only those to `port` (None: any), the payload after the
    UDP header."""
    out = []
    for f in frames:
        if f[12:14] != b"\x08\x00":
            continue
        ip = f[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != proto or int.from_bytes(ip[6:8], "big") & 0x3FFF:  # MF or an offset
            continue
        body = ip[ihl:int.from_bytes(ip[2:4], "big")]
        if proto == 17:
            if port is not None and int.from_bytes(body[2:4], "big") != port:
                continue
            body = body[8:]
        out.append((socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), body))
    return out


def icmpv6_type(ip: bytes) -> int | None:
    """The ICMPv6 type of an IPv6 packet (after a hop-by-hop header, as MLD has one);
    None if it is not ICMPv6."""
    nxt, at = ip[6], 40
    if nxt == 0:
        nxt, at = ip[40], 40 + (ip[41] + 1) * 8
    return ip[at] if nxt == 58 else None
