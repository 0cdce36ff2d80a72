"""Capturing frames on a lab switch or node, for tests that check what crossed a wire.

A capture streams every frame as it is seen, and a test waits for the frames it
expects (`Capture.wait_for`) with a generous deadline, rather than capturing for a
fixed time and counting afterwards: under emulation (the kernel-module guest runs
about 20 times slower) a fixed window is sometimes too short, and a test that
depends on it fails at random.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from lab.lab import Lab, NodeRef

#: A packet socket in the node's namespace; one hex line per frame, after "ready".
#: On a switch, every frame enters the bridge once, on its sender's port: frames
#: seen on the bridge device itself or as outgoing copies are left out, so each
#: frame is reported once.  With a device named after "sent", only the frames the
#: node sends out of that device (which may not exist yet) are reported; after
#: "received", only those it receives on it.  The kernel takes a VLAN tag off a
#: received frame before a packet socket sees it; it is put back (from
#: PACKET_AUXDATA), so each frame is reported as it was on the wire.
SCRIPT = r"""
import socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
name, mode = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while True:
    f, anc, _flags, (ifname, _proto, pkttype, _ha, _addr) = s.recvmsg(65535, socket.CMSG_SPACE(20))
    outgoing = pkttype == socket.PACKET_OUTGOING
    if mode == "sent":
        take = ifname == name and outgoing
    elif mode == "received":
        take = ifname == name and not outgoing
    else:
        take = ifname != name and not outgoing
    if not take:
        continue
    for level, kind, data in anc:
        status, _l, _s, _m, _n, tci, tpid = struct.unpack("IIIHHHH", data[:20])
        if level == 263 and kind == 8 and status & 0x10:  # TP_STATUS_VLAN_VALID
            f = f[:12] + struct.pack("!HH", tpid if status & 0x40 else 0x8100, tci) + f[12:]
    sys.stdout.write(f.hex() + "\n")
    sys.stdout.flush()
"""

#: How long a test may wait for the frames it expects.  Generous: it is only reached
#: when something is really wrong, and the emulated guest is slow.
DEADLINE = 60.0


class Capture:
    """Frames seen in a node's namespace (a switch: its bridge ports), from start
    until `stop`; with `sent`, the frames the node itself sends out of that device;
    with `received`, the frames it receives on that device.
    A context manager; `frames` grows as frames are seen."""

    def __init__(self, lab: Lab, node: NodeRef, bridge: str = "sw0", sent: str | None = None,
                 received: str | None = None) -> None:
        self.frames: list[bytes] = []
        self._lock = threading.Lock()
        argv = ([sent, "sent"] if sent is not None else [received, "received"] if received is not None
                else [bridge, "ports"])
        self._proc = lab.popen(node, [sys.executable, "-u", "-c", SCRIPT, *argv],
                               stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline().strip()
        if first != "ready":
            self._proc.kill()
            raise RuntimeError(f"the capture in {node} did not start: {first!r}")
        self._reader = threading.Thread(target=self._read, name="lab-capture", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            frame = bytes.fromhex(line.strip())
            with self._lock:
                self.frames.append(frame)

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
        """End the capture; every frame it saw."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(10)
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
