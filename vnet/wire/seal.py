"""Sealed messages of secure vnets (doc/security.md): header, AEAD, replay window.

One layout for both levels: a 38-byte header in the clear, the body (plaintext with
auth, ciphertext with conf) and a 16-byte ChaCha20-Poly1305 tag.  The nonce is the
header's last 12 bytes (sender address and sequence number), so it is unique as long
as each host numbers its packets with one counter that never goes back.

`SealedHeader` is the construct declaration of record; the datapath packs and
unpacks with the `struct` codec `HEADER`, which tests/unit/test_seal.py checks against it.
"""
from __future__ import annotations

import struct
import time

from construct import Bytes, Const, Int8ub, Int16ub, Int64ub, Padding, Struct
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MSG_SEALED = 4
TYPE_VARP = 1
TYPE_FRAME = 2
AUTH, CONF = 1, 2
LEVELS = {"none": 0, "auth": AUTH, "conf": CONF}

HEADER_LEN = 38
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN
NONCE_AT = 26
WINDOW = 2048

SealedHeader = Struct(
    "id" / Const(MSG_SEALED, Int16ub),
    "type" / Int8ub,
    "level" / Int8ub,
    "vnet" / Bytes(16),
    "key_id" / Int8ub,
    Padding(5),
    "sender" / Bytes(4),
    "seq" / Int64ub,
)

#: id, type, level, vnet, key id, sender, sequence (5 reserved bytes skipped).
HEADER = struct.Struct("!HBB16sB5x4sQ")


def new_sequence() -> int:
    """A host's first sequence number: the real-time clock in nanoseconds, so a
    restarted host starts above every number it sent before."""
    return time.time_ns()


def aead(secret: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(secret)


def seal(cipher: ChaCha20Poly1305, level: int, msg_type: int, vnet: bytes, key_id: int,
         sender: bytes, seq: int, body) -> tuple[bytes, ...]:
    """The sealed message as parts to hand to sendmsg (no join of a long body)."""
    header = HEADER.pack(MSG_SEALED, msg_type, level, vnet, key_id, sender, seq)
    nonce = header[NONCE_AT:]
    if level == CONF:
        return header, cipher.encrypt(nonce, body, header)
    return header, body, cipher.encrypt(nonce, b"", header + body)


def unseal(cipher: ChaCha20Poly1305, level: int, msg):
    """The body of a sealed message whose header was already checked (bytes with conf,
    a view of `msg` with auth); raises InvalidTag.  Buffers are used in place."""
    nonce = msg[NONCE_AT:HEADER_LEN]
    if level == CONF:
        return cipher.decrypt(nonce, msg[HEADER_LEN:], msg[:HEADER_LEN])
    cipher.decrypt(nonce, msg[-TAG_LEN:], msg[:-TAG_LEN])
    return msg[HEADER_LEN:-TAG_LEN]


class ReplayWindow:
    """Highest sequence number accepted from one sender, and which of the WINDOW
    numbers below it were seen (bit i of `seen` is number top - i)."""

    __slots__ = ("top", "seen")

    def __init__(self) -> None:
        self.top = -1
        self.seen = 0

    def fresh(self, seq: int) -> bool:
        """Whether seq may be accepted; checked before the tag, recorded after it."""
        if seq > self.top:
            return True
        back = self.top - seq
        return back < WINDOW and not self.seen >> back & 1

    def record(self, seq: int) -> None:
        if seq > self.top:
            shift = seq - self.top
            self.seen = (self.seen << shift | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.top = seq
        else:
            self.seen |= 1 << (self.top - seq)


__all__ = ["InvalidTag", "SealedHeader", "HEADER", "seal", "unseal", "ReplayWindow", "aead",
           "new_sequence", "LEVELS", "AUTH", "CONF", "TYPE_VARP", "TYPE_FRAME", "MSG_SEALED", "HEADER_LEN",
           "TAG_LEN", "OVERHEAD", "WINDOW"]
