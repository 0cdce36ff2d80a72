"""Traffic between lab nodes: checked transfers, and datagrams sent as they are given.

Each helper runs a small Python program inside a node's namespace (the VMs and hosts
of the lab have no other tools than the machine's), so what crosses the vnet is real
socket traffic, and each waits for its own end rather than for a fixed time.
"""
from __future__ import annotations

import random
import subprocess
import sys

from lab.lab import Lab, NodeRef

#: The receiving end of `transfer`: says "ready" once bound, then the byte (TCP) or
#: datagram (UDP) count and the SHA-256 of what arrived.
SINK = r"""
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001))
h = hashlib.sha256()
n = 0
if sys.argv[1] == "tcp":
    s.listen(1)
    print("ready", flush=True)
    c, _ = s.accept()
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b); n += len(b)
else:
    s.settimeout(60)  # the sender may take a while to start (seconds in the test guest)
    print("ready", flush=True)
    try:
        while True:
            b = s.recv(65535)
            h.update(b); n += 1
            s.settimeout(3)
    except socket.timeout:
        pass
print(n, h.hexdigest(), flush=True)
"""

#: The sending end: a seeded random payload, so both ends can print the same digest.
SOURCE = r"""
import hashlib, random, socket, sys, time
rnd = random.Random(5)
h = hashlib.sha256()
if sys.argv[2] == "tcp":
    data = rnd.randbytes(int(sys.argv[3]))
    s = socket.create_connection((sys.argv[1], 5001))
    s.sendall(data); s.close()
    print(len(data), hashlib.sha256(data).hexdigest())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(sys.argv[3])):
        d = rnd.randbytes(rnd.randrange(1, 1400))
        h.update(d); s.sendto(d, (sys.argv[1], 5001)); time.sleep(0.002)
    print(int(sys.argv[3]), h.hexdigest())
"""

#: Datagrams given in hex on the command line, sent in order from one source port.
DATAGRAMS = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
for h in sys.argv[4:]:
    s.sendto(bytes.fromhex(h), (sys.argv[1], int(sys.argv[3])))
"""

#: The same payload `count` times, 0.1 s apart, to UDP port 7 (discard) of a VM.
REPEAT = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 7))
    time.sleep(0.1)
"""

#: Ethernet frames given in hex, sent in order out of one interface (argv[1]).  With
#: argv[2] "-", frames come on stdin instead, a line each, for as long as it is open,
#: and an empty line is answered with the count sent so far (FrameStream).
FRAMES = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
if sys.argv[2:] != ["-"]:
    for h in sys.argv[2:]:
        s.send(bytes.fromhex(h))
    sys.exit()
n = 0
for line in sys.stdin:
    if len(line) > 1:
        s.send(bytes.fromhex(line)); n += 1
    else:
        print(n, flush=True)
"""


def transfer(lab: Lab, src: NodeRef, dst, kind: str, amount: int) -> None:
    """Send `amount` bytes (tcp) or datagrams (udp) from `src` to `dst` and check that
    exactly what was sent arrived (count and SHA-256)."""
    sink = lab.popen(dst, [sys.executable, "-c", SINK, kind], stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    sent = lab.run(src, [sys.executable, "-c", SOURCE, dst.ip, kind, str(amount)], timeout=60)
    assert sent.returncode == 0, sent.stderr
    got = sink.stdout.readline().strip()
    sink.wait(10)
    assert got == sent.stdout.strip(), f"{kind}: sent {sent.stdout.strip()} received {got}"


def send_datagrams(lab: Lab, node: NodeRef, dst: str, payloads: list[bytes], sport: int = 40000,
                   port: int = 1798) -> None:
    """Send each payload as one UDP datagram from `node` (source port `sport`) to
    `dst`:`port`, byte for byte: crafted vnet messages, replays, garbage."""
    r = lab.run(node, [sys.executable, "-c", DATAGRAMS, dst, str(sport), str(port)]
                + [p.hex() for p in payloads])
    assert r.returncode == 0, r.stderr


def send_udp(lab: Lab, node: NodeRef, dst: str, payload: bytes, count: int = 3) -> None:
    """Send `payload` `count` times to UDP port 7 of `dst`, 0.1 s apart."""
    r = lab.run(node, [sys.executable, "-c", REPEAT, dst, payload.hex(), str(count)])
    assert r.returncode == 0, r.stderr


def send_frames(lab: Lab, node: NodeRef, ifname: str, frames: list[bytes]) -> None:
    """Send each Ethernet frame, byte for byte, out of `ifname` of `node`: control
    protocols and tags no socket API would build."""
    r = lab.run(node, [sys.executable, "-c", FRAMES, ifname] + [f.hex() for f in frames])
    assert r.returncode == 0, r.stderr


class FrameStream:
    """Frames sent byte for byte out of `ifname` of `node` by one process with a raw
    socket, batch by batch, for as many frames as a test has (send_frames takes what
    one command line holds): `send(frames)` returns once all of them are out."""

    def __init__(self, lab: Lab, node: NodeRef, ifname: str) -> None:
        self.proc = lab.popen(node, [sys.executable, "-c", FRAMES, ifname, "-"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.sent = 0

    def send(self, frames: list[bytes]) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("".join(f.hex() + "\n" for f in frames) + "\n")
        self.proc.stdin.flush()
        self.sent += len(frames)
        line = self.proc.stdout.readline()
        assert line.strip() == str(self.sent), f"the sender said {line!r} after {self.sent} frames"

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(120)


def random_macs(count: int, seed: int = 1) -> list[bytes]:
    """`count` distinct random unicast, locally administered MACs (seeded): what a VM
    that makes up source addresses sends from."""
    rnd = random.Random(seed)
    out: dict[bytes, None] = {}
    while len(out) < count:
        m = rnd.randbytes(6)
        out[bytes([m[0] & 0xFC | 0x02]) + m[1:]] = None
    return list(out)
