"""The receiving host of the receive target, and how one fuzz input encodes packets.

Plain constants only (no vnet import): the target imports this before it imports
vnet under instrumentation, and the seed generator builds its inputs from the same
values.  The addresses are those of the worked examples in doc/wire-format.md (hosts
A and B, forwarding peer C, group 224.10.0.1) so its vectors are seeds as printed;
this host is a third one on their LAN.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

HERE, HERE2 = "192.0.2.3", "192.0.2.99"   # this host's underlay address, and another of its own
PREFIX_LEN = 24
GROUP = "224.10.0.1"
A, B, C = "192.0.2.1", "192.0.2.2", "203.0.113.7"
FAR = "198.18.0.9"                        # off-link and no peer: its multicast came relayed
#: The sources a packet can come from (index = the record's source byte, modulo).
SOURCES = (A, B, C, FAR, HERE, HERE2, "127.0.0.1", "0.0.0.0")
PEERS = (A, C)

#: doc/security.md's key (00 01 .. 1f, id 1), and a second one for rotation.
KEY1 = bytes(range(32))
KEY2 = bytes(range(1, 33))
#: Vnet id text -> (security, encapsulation, key ids held, attachments, MTU or None for
#: the default).  97 is the vnet of the worked examples; 9a has two attachments, so
#: the rules switch for it; 9b has the smallest MTU a vnet can have.
VNETS = {
    "97": ("none", "udp", (), 1, None),
    "98": ("auth", "udp", (1, 2), 1, None),
    "99": ("conf", "udp", (1,), 1, None),
    "9a": ("none", "etherip", (), 2, None),
    "9b": ("none", "udp", (), 1, 68),
}
KEYS = {1: KEY1, 2: KEY2}
#: The session the sealed seeds are sealed in: confirmed for every sender on every
#: secure vnet when the target resets (doc/security.md, "Sessions"), so sealed seeds
#: reach the rules after confirmation.  Any other session is unconfirmed.
SESSION = bytes(range(0x10, 0x20))
#: A challenge pending for sender B on every secure vnet at reset: an answer carrying
#: it confirms the session it is sealed in.
CHALLENGE = bytes(range(0x20, 0x30))
VM1 = bytes.fromhex("aa0000110011")
VM2 = bytes.fromhex("aa0000110012")   # a VM on this host, on every vnet
LOCAL_MACS = (VM2,)

UNICAST, GROUP_UDP, RAW = 0, 1, 2
CHANNELS = 3
#: A record: channel, source index, arrival TTL (group only), payload length; then the
#: payload.  An input is records back to back; the last one takes what is left.
RECORD = struct.Struct("!BBBH")


def records(data: bytes) -> Iterator[tuple[int, str, int, bytes]]:
    """(channel, source address, ttl, payload) for each packet of an input."""
    at = 0
    while at + RECORD.size <= len(data):
        channel, source, ttl, length = RECORD.unpack_from(data, at)
        at += RECORD.size
        payload = data[at:at + length]
        at += len(payload)
        yield channel % CHANNELS, SOURCES[source % len(SOURCES)], ttl, payload


def record(channel: int, source: str, payload: bytes, ttl: int = 64) -> bytes:
    return RECORD.pack(channel, SOURCES.index(source), ttl, len(payload)) + payload
