"""Wire formats of vnet, declared once with construct, plus the fast-path encoders.

The construct declarations are the documentation of record (see doc/wire-format.md)
and are used by control-plane code and tests.  The per-packet path never parses with
construct: it uses the prebuilt prefixes and the `struct` codecs below, and
tests/unit/test_wire.py checks that both agree byte for byte, so the two cannot drift.

Compatibility notes (reference xen-vnet.md, section 4):
- the EtherIP header's first two bytes are ``00 40`` (the original's little-endian
  bitfield layout, version 4 in the high nibble of the second byte), not RFC 3378;
  receivers also accept the big-endian ``40 00`` a big-endian Xen host would emit;
- UDP checksums are 0 and both ports are 1798;
- VFWD packets carry a whole IPv4 packet whose source may be 0.0.0.0 (filled in by
  the receiving peer).
"""
from __future__ import annotations

import socket
import struct

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    ByteSwapped,
    Const,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Struct,
    this,
)

PORT = 1798
DEFAULT_GROUP = "224.10.0.1"
IPPROTO_ETHERIP = 97
IPPROTO_UDP = 17
DEFAULT_TTL = 64

MSG_VARP = 1
MSG_VUDP = 2
MSG_VFWD = 3

VARP_REQUEST = 1
VARP_ANNOUNCE = 2

ETHERIP_VERSION = 4
AF_INET_VARP = 2  # the family byte of VarpAddr, Linux AF_INET

VNET_MSG_HEADER_LEN = 4
ETHERIP_HEADER_LEN = 18
VARP_LEN = 43
ETH_HEADER_LEN = 14
IPV4_HEADER_LEN = 20
UDP_HEADER_LEN = 8

# ---- declarations (construct) ------------------------------------------------

VnetMsgHeader = Struct(
    "id" / Int16ub,
    "opcode" / Int16ub,
)

EtherIPHeader = Struct(
    # A 16-bit little-endian word whose top nibble is the version: on the wire 00 40.
    "word" / ByteSwapped(BitStruct("version" / BitsInteger(4), "reserved" / BitsInteger(12))),
    "vnet" / Bytes(16),
)

VarpMessage = Struct(
    "id" / Const(MSG_VARP, Int16ub),
    "opcode" / Int16ub,
    "vnet" / Bytes(16),
    "vmac" / Bytes(6),
    "family" / Int8ub,
    "addr" / Bytes(16),
)

IPv4Header = Struct(
    "version_ihl" / Int8ub,
    "tos" / Int8ub,
    "total_length" / Int16ub,
    "ident" / Int16ub,
    "flags_frag" / Int16ub,
    "ttl" / Int8ub,
    "protocol" / Int8ub,
    "checksum" / Int16ub,
    "src" / Bytes(4),
    "dst" / Bytes(4),
)

UDPHeader = Struct(
    "src_port" / Int16ub,
    "dst_port" / Int16ub,
    "length" / Int16ub,
    "checksum" / Int16ub,
)

VudpPacket = Struct(
    "header" / VnetMsgHeader,
    "etherip" / EtherIPHeader,
    "frame" / GreedyBytes,
)

VfwdPacket = Struct(
    "header" / VnetMsgHeader,
    "ip" / IPv4Header,
    "payload" / Bytes(this.ip.total_length - IPV4_HEADER_LEN),
)

# ---- fast path ---------------------------------------------------------------

_ETHERIP_WORD = b"\x00\x40"
VUDP_HEADER = b"\x00\x02\x00\x00"
VFWD_HEADER = b"\x00\x03\x00\x00"
#: The longest VFWD message (header, inner packet): what one UDP datagram carries.  A
#: longer one would wrap the 16-bit lengths of the outer packet; it is not sent.
VFWD_MAX_LEN = 0xFFFF - IPV4_HEADER_LEN - UDP_HEADER_LEN
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_VARP = struct.Struct("!HH16s6sB16s")


def etherip_prefix(vnet: bytes) -> bytes:
    """The 18 bytes put in front of every frame of a vnet using raw EtherIP."""
    return _ETHERIP_WORD + vnet


def vudp_prefix(vnet: bytes) -> bytes:
    """The 22 bytes put in front of every frame of a vnet using EtherIP-in-UDP."""
    return VUDP_HEADER + _ETHERIP_WORD + vnet


def etherip_version_ok(b0: int, b1: int) -> bool:
    """The original's check (version nibble high in byte 1, reserved bits ignored), plus
    the big-endian layout 40 00 that a big-endian Xen host would have sent."""
    return b1 >> 4 == ETHERIP_VERSION or (b0 >> 4 == ETHERIP_VERSION and b1 == 0)


def pack_varp(opcode: int, vnet: bytes, vmac: bytes, addr: str) -> bytes:
    """A 43-byte VARP message; the address is IPv4, zero-padded to 16 bytes."""
    return _VARP.pack(MSG_VARP, opcode, vnet, vmac, AF_INET_VARP, socket.inet_aton(addr))


#: The extension our hosts put after the 43 bytes of every VARP announce they send
#: (doc/wire-format.md, "Super-frames"): "vf", then a 16-bit feature word whose bit 0
#: says "this host accepts super-frames".  The original reads 43 bytes and ignores
#: the rest.
VARP_EXT_SUPER = b"vf\x00\x01"
VARP_EXT_LEN = len(VARP_EXT_SUPER)


def varp_accepts_super(data) -> bool:
    """Whether a VARP message of at least 43 bytes carries VARP_EXT_SUPER."""
    return len(data) >= VARP_LEN + VARP_EXT_LEN and data[VARP_LEN:VARP_LEN + VARP_EXT_LEN] == VARP_EXT_SUPER


def unpack_varp(data) -> tuple[int, bytes, bytes, int, bytes]:
    """(opcode, vnet, vmac, family, addr16) of a VARP message of at least 43 bytes."""
    _id, opcode, vnet, vmac, family, addr = _VARP.unpack_from(data, 0)
    return opcode, vnet, vmac, family, addr


def ipv4_checksum(header: bytes) -> int:
    """Internet checksum of an IPv4 header (ones' complement of the ones' complement sum)."""
    total = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_header(src: bytes, dst: bytes, protocol: int, payload_len: int,
                ttl: int = DEFAULT_TTL, df: bool = False, ident: int = 0,
                checksum: bool = True) -> bytes:
    """A 20-byte IPv4 header.  With checksum=False the checksum stays 0, as in the
    inner header of a VFWD packet that its originator sends before the route fills it."""
    flags = 0x4000 if df else 0
    hdr = _IPV4.pack(0x45, 0, IPV4_HEADER_LEN + payload_len, ident, flags, ttl, protocol, 0, src, dst)
    if not checksum:
        return hdr
    csum = ipv4_checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:]


def udp_header(payload_len: int, sport: int = PORT, dport: int = PORT) -> bytes:
    """UDP header with checksum 0, as every vnet sender writes it."""
    return _UDP.pack(sport, dport, UDP_HEADER_LEN + payload_len, 0)


def vfwd_inner_udp(src: bytes, dst: bytes, payload_len: int, ttl: int = DEFAULT_TTL,
                   checksum: bool = False) -> bytes:
    """IP + UDP headers of the packet a VFWD carries, for a UDP payload of payload_len."""
    return ipv4_header(src, dst, IPPROTO_UDP, UDP_HEADER_LEN + payload_len, ttl=ttl,
                       checksum=checksum) + udp_header(payload_len)
