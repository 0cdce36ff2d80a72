"""Traffic between lab nodes: checked transfers, and datagrams sent as they are given.

Each helper runs a small Python program inside a node's namespace (the VMs and hosts
of the lab have no other tools than the machine's), so what crosses the vnet is real
socket traffic, and each waits for its own end rather than for a fixed time.
"""
from __future__ import annotations

import subprocess

from lab.lab import Lab, NodeRef
from lab.procs import script_argv

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

#: Ethernet frames given in hex, sent in order out of one interface (argv[1]).
FRAMES = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
"""


def transfer(lab: Lab, src: NodeRef, dst, kind: str, amount: int) -> None:
    """Send `amount` bytes (tcp) or datagrams (udp) from `src` to `dst` and check that
    exactly what was sent arrived (count and SHA-256)."""
    sink = lab.popen(dst, script_argv(SINK, kind), stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    sent = lab.run(src, script_argv(SOURCE, dst.ip, kind, str(amount)), timeout=60)
    assert sent.returncode == 0, sent.stderr
    got = sink.stdout.readline().strip()
    sink.wait(10)
    assert got == sent.stdout.strip(), f"{kind}: sent {sent.stdout.strip()} received {got}"


def send_datagrams(lab: Lab, node: NodeRef, dst: str, payloads: list[bytes], sport: int = 40000,
                   port: int = 1798) -> None:
    """Send each payload as one UDP datagram from `node` (source port `sport`) to
    `dst`:`port`, byte for byte: crafted vnet messages, replays, garbage."""
    r = lab.run(node, script_argv(DATAGRAMS, dst, str(sport), str(port))
                + [p.hex() for p in payloads])
    assert r.returncode == 0, r.stderr


def send_udp(lab: Lab, node: NodeRef, dst: str, payload: bytes, count: int = 3) -> None:
    """Send `payload` `count` times to UDP port 7 of `dst`, 0.1 s apart."""
    r = lab.run(node, script_argv(REPEAT, dst, payload.hex(), str(count)))
    assert r.returncode == 0, r.stderr


def send_frames(lab: Lab, node: NodeRef, ifname: str, frames: list[bytes]) -> None:
    """Send each Ethernet frame, byte for byte, out of `ifname` of `node`: control
    protocols and tags no socket API would build."""
    r = lab.run(node, script_argv(FRAMES, ifname) + [f.hex() for f in frames])
    assert r.returncode == 0, r.stderr
