"""Traffic between lab nodes: checked transfers, and datagrams sent as they are given.

Each helper runs a small Python program inside a node's namespace (the VMs and hosts
of the lab have no other tools than the machine's), so what crosses the vnet is real
socket traffic, and each waits for its own end rather than for a fixed time.  The
storm sender (`blast`) runs in a forked child instead: it starts in no time, also in
the slow test guest.
"""
from __future__ import annotations

import ctypes
import errno
import json
import random
import socket
import struct
import subprocess
import time
from pathlib import Path

from lab.lab import Host, Lab, NodeRef
from lab.procs import script_argv
from lab.vnethost import run_in_namespace

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
s.setsockopt(socket.SOL_SOCKET, 11, int(sys.argv[4]))  # SO_NO_CHECK
s.bind(("0.0.0.0", int(sys.argv[2])))
for h in sys.argv[5:]:
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
    sink = lab.popen(dst, script_argv(SINK, kind), stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    sent = lab.run(src, script_argv(SOURCE, dst.ip, kind, str(amount)), timeout=60)
    assert sent.returncode == 0, sent.stderr
    got = sink.stdout.readline().strip()
    sink.wait(10)
    assert got == sent.stdout.strip(), f"{kind}: sent {sent.stdout.strip()} received {got}"


def send_datagrams(lab: Lab, node: NodeRef, dst: str, payloads: list[bytes], sport: int = 40000,
                   port: int = 1798, checksum: bool = False) -> None:
    """Send each payload as one UDP datagram from `node` (source port `sport`) to
    `dst`:`port`, byte for byte: crafted vnet messages, replays, garbage.  The UDP
    checksum is 0, as every vnet host sends it, unless `checksum`."""
    r = lab.run(node, script_argv(DATAGRAMS, dst, str(sport), str(port), str(int(not checksum)))
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



class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_IoVec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


#: Messages one sendmmsg(2) call sends at most.
_BATCH = 64
_KINDS = ("udp", "raw")


def write_pool(path, pool: list[tuple[str, bytes]]) -> None:
    """Write a storm's pool for `blast`: (kind, payload) pairs, kind "udp" (a datagram to
    port 1798) or "raw" (the payload of an IP protocol 97 packet)."""
    with open(path, "wb") as f:
        f.writelines(bytes([_KINDS.index(kind)]) + len(p).to_bytes(2, "big") + p for kind, p in pool)


def _read_pool(path) -> dict[str, list[bytes]]:
    data = Path(path).read_bytes()
    out: dict[str, list[bytes]] = {k: [] for k in _KINDS}
    at = 0
    while at < len(data):
        n = int.from_bytes(data[at + 1:at + 3], "big")
        out[_KINDS[data[at]]].append(data[at + 3:at + 3 + n])
        at += 3 + n
    return out


def _messages(payloads: list[bytes], dst: str, port: int, keep: list) -> ctypes.Array:
    """sendmmsg headers for `payloads` to dst:port, built once; `keep` holds the buffers."""
    addr = ctypes.create_string_buffer(struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port),
                                                   socket.inet_aton(dst)), 16)
    bufs = [ctypes.create_string_buffer(p, max(len(p), 1)) for p in payloads]
    iovs = (_IoVec * len(bufs))(*[_IoVec(ctypes.addressof(b), len(p)) for b, p in zip(bufs, payloads)])
    msgs = (_MMsgHdr * len(bufs))()
    for i in range(len(bufs)):
        msgs[i].hdr = _MsgHdr(ctypes.addressof(addr), 16, ctypes.pointer(iovs[i]), 1, None, 0, 0)
    keep.extend((addr, bufs, iovs))
    return msgs


def _storm(dst: str, pool_path: str, count: int) -> int:
    """The sending end of `blast`, in the sender's namespace: prints what it sent as JSON."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    pool = _read_pool(pool_path)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 1798))  # where a host we are a peer of sends its relays
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 97)
    keep: list = []
    plan = [(kind, s, _messages(pool[kind], dst, port, keep))
            for kind, s, port in (("udp", udp, 1798), ("raw", raw, 0)) if pool[kind]]
    sent = dict.fromkeys(_KINDS, 0)
    failed: dict[str, int] = {}
    total = 0
    start = time.monotonic()
    longest = max(len(msgs) for _, _, msgs in plan)
    while total < count:
        at = 0
        while at < longest and total < count:
            for kind, s, msgs in plan:  # a batch of each kind in turn
                i, end = at, min(at + _BATCH, len(msgs))
                while i < end and total < count:
                    n = libc.sendmmsg(s.fileno(), ctypes.addressof(msgs[i]), min(end - i, count - total), 0)
                    if n < 0:  # that message is lost: counted as failed, not sent
                        name = errno.errorcode.get(ctypes.get_errno(), "?")
                        failed[name] = failed.get(name, 0) + 1
                        n = 1
                    else:
                        sent[kind] += n
                    total += n
                    i += n
            at += _BATCH
    seconds = time.monotonic() - start
    udp.close()
    raw.close()
    print(json.dumps({**sent, "failed": failed, "seconds": seconds}))
    return 0


def blast(node: Host, dst: str, pool_path, count: int, timeout: float = 600) -> dict:
    """Send `count` packets from `node` to `dst`, cycling through the pool that
    `write_pool` wrote, as fast as the kernel takes them: "udp" entries to UDP port 1798
    (from port 1798), "raw" ones as IP protocol 97.  sendmmsg(2) over message headers
    built once, in batches alternating between the kinds, so no Python runs per packet
    and the sender is not what limits the rate; run in a forked child (no interpreter
    to start: seconds in the test guest).  Returns what the sender saw:
    {"udp": sent, "raw": sent, "failed": {errno name: n}, "seconds": t}."""
    code, out, err = run_in_namespace(node.ns, _storm, dst, str(pool_path), count, timeout=timeout)
    assert code == 0, err
    return json.loads(out)


class FrameStream:
    """Frames sent byte for byte out of `ifname` of `node` by one process with a raw
    socket, batch by batch, for as many frames as a test has (send_frames takes what
    one command line holds): `send(frames)` returns once all of them are out."""

    def __init__(self, lab: Lab, node: NodeRef, ifname: str) -> None:
        self.proc = lab.popen(node, script_argv(FRAMES, ifname, "-"),
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
