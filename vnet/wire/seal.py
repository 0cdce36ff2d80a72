"""Sealed messages of secure vnets (doc/security.md): header, AEAD, replay window.

One layout for both levels: a 50-byte header in the clear, the body (plaintext with
auth, ciphertext with conf) and a 16-byte tag.  The cipher is XChaCha20-Poly1305 under
the vnet key with the header's session and counter as its 24-byte nonce, computed as
ChaCha20-Poly1305 under the session key HChaCha20(key, session): a host draws a random
session every time it starts, so no nonce repeats however hosts share addresses or set
their clocks, and the session key is derived once per session, not per packet.

`SealedHeader` is the construct declaration of record; the datapath packs and
unpacks with the `struct` codec `HEADER`, which tests/unit/test_seal.py checks against it.
"""
from __future__ import annotations

import os
import struct

from construct import Bytes, Const, Int8ub, Int16ub, Int64ub, Padding, Struct
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MSG_SEALED = 5
#: The sealed message before sessions (a 38-byte header, nonce from the clock).
MSG_OLD_SEALED = 4
TYPE_VARP = 1
TYPE_FRAME = 2
TYPE_CHALLENGE = 3
TYPE_ANSWER = 4
AUTH, CONF = 1, 2
LEVELS = {"none": 0, "auth": AUTH, "conf": CONF}

HEADER_LEN = 50
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN
NONCE_AT = SESSION_AT = 26
COUNTER_AT = 42
SESSION_LEN = 16
CHALLENGE_LEN = 16
WINDOW = 2048

SealedHeader = Struct(
    "id" / Const(MSG_SEALED, Int16ub),
    "type" / Int8ub,
    "level" / Int8ub,
    "vnet" / Bytes(16),
    "key_id" / Int8ub,
    Padding(1),
    "sender" / Bytes(4),
    "session" / Bytes(SESSION_LEN),
    "counter" / Int64ub,
)

#: id, type, level, vnet, key id, sender, session, counter (the reserved byte skipped).
HEADER = struct.Struct("!HBB16sBx4s16sQ")

_WORDS = struct.Struct("<16I")
#: "expand 32-byte k", ChaCha's first four state words.
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)


def hchacha20(key: bytes, inp: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha-03, 2.2) of a 32-byte key and 16-byte input.

    A ChaCha20 block is the permuted state plus the initial state, and cryptography's
    16-byte ChaCha20 nonce fills state words 12-15 exactly as HChaCha20's input does, so
    subtracting the initial state from block 0 leaves the permuted words HChaCha20 keeps.
    """
    if len(key) != 32 or len(inp) != 16:
        raise ValueError("hchacha20 takes a 32-byte key and a 16-byte input")
    block = Cipher(algorithms.ChaCha20(key, inp), mode=None).encryptor().update(bytes(64))
    out = _WORDS.unpack(block)
    init = _SIGMA + struct.unpack("<8I", key) + struct.unpack("<4I", inp)
    kept = [(out[i] - init[i]) & 0xFFFFFFFF for i in (0, 1, 2, 3, 12, 13, 14, 15)]
    return struct.pack("<8I", *kept)


def new_session() -> bytes:
    """A fresh session: drawn at every start of a sealing datapath, never stored."""
    return os.urandom(SESSION_LEN)


def aead(secret: bytes, session: bytes) -> ChaCha20Poly1305:
    """The cipher of one (key, session): ChaCha20-Poly1305 under the session key."""
    return ChaCha20Poly1305(hchacha20(secret, session))


def seal(cipher: ChaCha20Poly1305, level: int, msg_type: int, vnet: bytes, key_id: int,
         sender: bytes, session: bytes, counter: int, body) -> tuple[bytes, ...]:
    """The sealed message as parts to hand to sendmsg (no join of a long body)."""
    header = HEADER.pack(MSG_SEALED, msg_type, level, vnet, key_id, sender, session, counter)
    nonce = bytes(4) + header[COUNTER_AT:]
    if level == CONF:
        return header, cipher.encrypt(nonce, body, header)
    return header, body, cipher.encrypt(nonce, b"", header + body)


def unseal(cipher: ChaCha20Poly1305, level: int, msg):
    """The body of a sealed message whose header was already checked (bytes with conf,
    a view of `msg` with auth); raises InvalidTag.  Buffers are used in place."""
    nonce = bytes(4) + bytes(msg[COUNTER_AT:HEADER_LEN])
    if level == CONF:
        return cipher.decrypt(nonce, msg[HEADER_LEN:], msg[:HEADER_LEN])
    cipher.decrypt(nonce, msg[-TAG_LEN:], msg[:-TAG_LEN])
    return msg[HEADER_LEN:-TAG_LEN]


class ReplayWindow:
    """Highest sequence number accepted from one sender, and which of the WINDOW
    numbers below it were seen (bit i of `seen` is number top - i)."""

    __slots__ = ("top", "seen")

    def __init__(self, floor: int | None = None) -> None:
        """An empty window, or with `floor` (the counter of the answer that confirmed a
        session) one where every number up to the floor counts as seen."""
        if floor is None:
            self.top, self.seen = -1, 0
        else:
            self.top, self.seen = floor, (1 << WINDOW) - 1

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
           "hchacha20", "new_session", "LEVELS", "AUTH", "CONF", "TYPE_VARP", "TYPE_FRAME",
           "TYPE_CHALLENGE", "TYPE_ANSWER", "MSG_SEALED", "MSG_OLD_SEALED", "HEADER_LEN", "TAG_LEN",
           "OVERHEAD", "NONCE_AT", "SESSION_AT", "COUNTER_AT", "SESSION_LEN", "CHALLENGE_LEN",
           "WINDOW"]
