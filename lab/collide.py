"""MAC addresses that the module's old, unkeyed MAC-table hash puts in one bucket.

Until issue 12 the module (kmod/table.c) chose a (vnet, MAC) entry's bucket as
``jhash(mac, 6, jhash(vnet_id, 16, 0)) & 1023``: Bob Jenkins' lookup3 as the kernel
has it (include/linux/jhash.h), with no secret.  Anyone who knows a vnet id (they are
public) can compute MACs that all land in one bucket, so every lookup walks one long
chain.  This finds such MACs, and sends frames from them (or from any MACs) to a
module host, for the tests and the benchmark that show the keyed hash ends that.

The search fixes the last two bytes of the MAC and tries the middle three: with a
6-byte key, jhash adds bytes 0-3 to ``a`` and 4-5 to ``b`` and then only runs its
final mix, so a batch of candidates differs only in ``a``.  Python integers are used
as SIMD registers (64-bit lanes, each holding one 32-bit word), so a batch of 65536
candidates costs a few dozen big-integer operations instead of a million
interpreted ones: in the test guest, under emulation, that is seconds, not minutes.
"""
from __future__ import annotations

import socket
import time
from array import array

from lab.netns import run_in_ns
from lab.vnethost import VnetHost
from vnet.datapath.kmod import client as kmod
from vnet.wire import formats as wire

__all__ = ["OLD_TABLE_BITS", "Flooder", "colliding_macs", "frame", "jhash", "old_bucket"]

#: kmod/table.c's VNET_TABLE_BITS: 1024 buckets.
OLD_TABLE_BITS = 10
JHASH_INITVAL = 0xDEADBEEF
_M = 0xFFFFFFFF


def _rol(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M; a ^= _rol(c, 4); c = (c + b) & _M
    b = (b - a) & _M; b ^= _rol(a, 6); a = (a + c) & _M
    c = (c - b) & _M; c ^= _rol(b, 8); b = (b + a) & _M
    a = (a - c) & _M; a ^= _rol(c, 16); c = (c + b) & _M
    b = (b - a) & _M; b ^= _rol(a, 19); a = (a + c) & _M
    c = (c - b) & _M; c ^= _rol(b, 4); b = (b + a) & _M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & _M
    a ^= c; a = (a - _rol(c, 11)) & _M
    b ^= a; b = (b - _rol(a, 25)) & _M
    c ^= b; c = (c - _rol(b, 16)) & _M
    a ^= c; a = (a - _rol(c, 4)) & _M
    b ^= a; b = (b - _rol(a, 14)) & _M
    c ^= b; c = (c - _rol(b, 24)) & _M
    return c


def jhash(key: bytes, initval: int = 0) -> int:
    """The kernel's jhash() of `key` on a little-endian machine."""
    length = len(key)
    a = b = c = (JHASH_INITVAL + length + initval) & _M
    k = key
    while len(k) > 12:
        a = (a + int.from_bytes(k[0:4], "little")) & _M
        b = (b + int.from_bytes(k[4:8], "little")) & _M
        c = (c + int.from_bytes(k[8:12], "little")) & _M
        a, b, c = _mix(a, b, c)
        k = k[12:]
    if not k:
        return c
    tail = k + bytes(12 - len(k))  # the switch's fall-through adds the bytes there are
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    return _final(a, b, c)


def old_bucket(vnet: bytes, mac: bytes) -> int:
    """The bucket kmod/table.c gave (vnet, mac) before the hash was keyed."""
    return jhash(mac, jhash(vnet)) & ((1 << OLD_TABLE_BITS) - 1)


class _Lanes:
    """Arithmetic on many 32-bit words at once, one per 64-bit lane of an int."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ones = int.from_bytes(array("Q", [1] * n).tobytes(), "little")
        self.mask = self.ones * _M

    def splat(self, x: int) -> int:
        return self.ones * x

    def pack(self, words: list[int]) -> int:
        return int.from_bytes(array("Q", words).tobytes(), "little")

    def unpack(self, x: int) -> array:
        out = array("Q")
        out.frombytes(x.to_bytes(8 * self.n, "little"))
        return out

    def sub(self, x: int, y: int) -> int:
        return (x + (y ^ self.mask) + self.ones) & self.mask

    def rol(self, x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & self.mask

    def final(self, a: int, b: int, c: int) -> int:
        sub, rol = self.sub, self.rol
        c ^= b; c = sub(c, rol(b, 14))
        a ^= c; a = sub(a, rol(c, 11))
        b ^= a; b = sub(b, rol(a, 25))
        c ^= b; c = sub(c, rol(b, 16))
        a ^= c; a = sub(a, rol(c, 4))
        b ^= a; b = sub(b, rol(a, 14))
        c ^= b; c = sub(c, rol(b, 24))
        return c


def colliding_macs(vnet: bytes, count: int, tail: bytes = b"\x97\x01", batch: int = 1 << 16) -> list[bytes]:
    """`count` distinct unicast, locally administered MACs (02:xx:xx:xx:`tail`) that
    the old hash puts in one bucket of vnet `vnet`'s table, and that bucket's first."""
    init = (JHASH_INITVAL + 6 + jhash(vnet)) & _M
    b = (init + tail[0] + (tail[1] << 8)) & _M
    lanes = _Lanes(batch)
    found: list[bytes] = []
    target = None
    for start in range(0, 1 << 24, batch):
        middles = range(start, min(start + batch, 1 << 24))
        # Bytes 0-3 little-endian: 0x02, then the three middle bytes.
        a = lanes.pack([(init + 0x02 + (m << 8)) & _M for m in middles] + [0] * (batch - len(middles)))
        c = lanes.final(a, lanes.splat(b), lanes.splat(init))
        buckets = lanes.unpack(c & lanes.splat((1 << OLD_TABLE_BITS) - 1))[:len(middles)]
        if target is None:
            target = buckets[0]
        for i in [i for i, h in enumerate(buckets) if h == target]:
            found.append(bytes([0x02]) + middles[i].to_bytes(3, "little") + tail)
            if len(found) == count:
                return found
    raise ValueError(f"only {len(found)} colliding MACs with tail {tail.hex()}")


#: Frames sent before waiting for the module to have handled them: fewer than a CPU's
#: receive backlog (net.core.netdev_max_backlog, 1000) holds, so none is dropped there.
CHUNK = 256

def frame(vnet: bytes, src: bytes, dst: bytes = b"\x02\x00\x00\x00\x00\xfe") -> bytes:
    """A VUDP datagram carrying a minimum-size frame from MAC `src`."""
    return wire.vudp_prefix(vnet) + dst + src + b"\x88\xb5" + bytes(46)


class Flooder:
    """Sends crafted VUDP datagrams from a plain lab host to a module host, a chunk at a
    time, each chunk waited for in the module's counters: every frame is handled."""

    def __init__(self, target: VnetHost, sender_ns: str) -> None:
        self.dst = (target.ip, wire.PORT)
        self.sock = run_in_ns(sender_ns, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        self.client = kmod.KmodClient(kmod.VnetSocket(netns=target.host.ns))

    def close(self) -> None:
        self.sock.close()
        self.client.close()

    def received(self) -> int:
        return kmod.stat_values(self.client.settings().get_attr("VNET_A_COUNTERS")).get("udp-received", 0)

    def send(self, datagrams: list[bytes], timeout: float = 120.0) -> None:
        base = self.received()
        for start in range(0, len(datagrams), CHUNK):
            for d in datagrams[start:start + CHUNK]:
                self.sock.sendto(d, self.dst)
            want = base + min(start + CHUNK, len(datagrams))
            deadline = time.monotonic() + timeout
            while (got := self.received()) < want:
                assert time.monotonic() < deadline, f"the module handled {got - base} of {want - base} frames"
                time.sleep(0.01)
