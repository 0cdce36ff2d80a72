"""Virtio-net headers for offloading taps: finishing checksums, rebuilding GSO metadata.

On the wire every frame of at most PLAIN_FRAME_MAX bytes is an ordinary Ethernet
frame with complete checksums, as any vnet host expects.  Longer frames are TCP
super-frames (several segments with a partial checksum, as TCP segmentation offload
leaves them); the receiver marks them for segmentation again when it writes them to
its own tap, choosing the segment size from its MTU.  Only hosts known to accept them
get super-frames (doc/wire-format.md); every other destination gets the segments
`segment` cuts, as ordinary frames.
"""
from __future__ import annotations

import struct

VNET_HDR_LEN = 10
ZERO_HDR = bytes(VNET_HDR_LEN)
PLAIN_FRAME_MAX = 1514
#: The original receiver reads a datagram into a 1700-byte buffer: a frame in a longer
#: VUDP packet (22 bytes of prefix) can only come from a host that takes super-frames.
ORIGINAL_FRAME_MAX = 1700 - 22

_NEEDS_CSUM = 1
_GSO_TCPV4, _GSO_TCPV6 = 1, 4
_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset


def finish_checksum(data: bytes) -> bytearray:
    """The frame after the virtio header, with the partial checksum it carries completed.

    The checksum field holds the pseudo-header sum; the ones' complement sum of the
    covered bytes is their big-endian integer value modulo 0xffff (2**16 = 1 mod
    0xffff), which Python computes in C, fast enough for the small frames this runs on.
    """
    _flags, _gso, _hl, _gs, start, offset = _HDR.unpack_from(data, 0)
    frame = bytearray(memoryview(data)[VNET_HDR_LEN:])
    where = start + offset
    if where + 2 > len(frame):
        return frame
    covered = frame[start:]
    if len(covered) & 1:
        covered.append(0)
    total = int.from_bytes(covered, "big") % 0xFFFF
    csum = ~total & 0xFFFF if total else 0
    if csum == 0 and offset == 6:  # UDP: 0 means "no checksum", so send 0xffff
        csum = 0xFFFF
    frame[where:where + 2] = csum.to_bytes(2, "big")
    return frame


def gso_header(frame, mtu: int) -> bytes:
    """Virtio header for writing a received super-frame; ZERO_HDR if it is not TCP, or
    if its IP and TCP headers leave no room for a segment at this MTU (a small vnet
    MTU and long headers: the frame cannot be segmented for this vnet, and is written
    as it came, like a long frame that is not TCP)."""
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != 6:
            return ZERO_HDR
        gso_type, l4 = _GSO_TCPV4, 14 + ihl
    elif ethertype == 0x86DD and len(frame) >= 54:
        if frame[20] != 6:
            return ZERO_HDR
        gso_type, l4 = _GSO_TCPV6, 54
    else:
        return ZERO_HDR
    if len(frame) < l4 + 20:
        return ZERO_HDR
    thl = (frame[l4 + 12] >> 4) * 4
    mss = mtu - (l4 - 14) - thl
    if mss < 1:
        return ZERO_HDR
    return _HDR.pack(_NEEDS_CSUM, gso_type, l4 + thl, mss, l4, 16)


def _fold(data) -> int:
    """Ones' complement sum of big-endian 16-bit words (odd length padded), folded."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def segment(data) -> list[bytearray] | None:
    """The TCP segments of a super-frame read from a tap (virtio header included), as
    ordinary frames with complete checksums, cut at the header's gso_size; None if it
    is not a TCP super-frame.  The slow path: only for hosts that cannot take the
    super-frame itself."""
    _flags, gso_type, _hl, mss, l4, _off = _HDR.unpack_from(data, 0)
    frame = memoryview(data)[VNET_HDR_LEN:]
    v4 = gso_type == _GSO_TCPV4
    ethertype = 0x0800 if v4 else 0x86DD
    if (gso_type not in (_GSO_TCPV4, _GSO_TCPV6) or not mss or len(frame) < l4 + 20
            or frame[12] << 8 | frame[13] != ethertype):
        return None
    hl = l4 + (frame[l4 + 12] >> 4) * 4
    head = bytes(frame[:hl])
    body = frame[hl:]
    seq = int.from_bytes(head[l4 + 4:l4 + 8], "big")
    ident = int.from_bytes(head[18:20], "big") if v4 else 0
    pseudo = _fold(head[26:34] if v4 else head[22:54]) + 6
    out = []
    last = (len(body) - 1) // mss
    for i in range(last + 1):
        chunk = body[i * mss:(i + 1) * mss]
        seg = bytearray(head)
        seg += chunk
        tcp_len = len(seg) - l4
        if v4:
            seg[16:18] = (len(seg) - 14).to_bytes(2, "big")
            seg[18:20] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
            seg[24:26] = b"\0\0"
            seg[24:26] = (~_fold(seg[14:l4]) & 0xFFFF).to_bytes(2, "big")
        else:
            seg[18:20] = (len(seg) - 54).to_bytes(2, "big")
        seg[l4 + 4:l4 + 8] = ((seq + i * mss) & 0xFFFFFFFF).to_bytes(4, "big")
        if i < last:
            seg[l4 + 13] &= ~0x09 & 0xFF  # FIN and PSH only on the last segment
        if i:
            seg[l4 + 13] &= ~0x80 & 0xFF  # CWR only on the first
        seg[l4 + 16:l4 + 18] = b"\0\0"
        total = (pseudo + tcp_len + _fold(seg[l4:])) % 0xFFFF
        seg[l4 + 16:l4 + 18] = (~total & 0xFFFF).to_bytes(2, "big")
        out.append(seg)
    return out
