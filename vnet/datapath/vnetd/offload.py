"""Virtio-net headers for offloading taps: finishing checksums, rebuilding GSO metadata.

On the wire every frame of at most PLAIN_FRAME_MAX bytes is an ordinary Ethernet
frame with complete checksums, as any vnet host expects.  Longer frames are TCP
super-frames (several segments with a partial checksum, as TCP segmentation offload
leaves them); the receiver marks them for segmentation again when it writes them to
its own tap, choosing the segment size from its MTU.  So only hosts running this
code exchange frames longer than the MTU, and the check is the frame length alone.
"""
from __future__ import annotations

import struct

VNET_HDR_LEN = 10
ZERO_HDR = bytes(VNET_HDR_LEN)
PLAIN_FRAME_MAX = 1514

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
    """Virtio header for writing a received super-frame; ZERO_HDR if it is not TCP."""
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
    return _HDR.pack(_NEEDS_CSUM, gso_type, l4 + thl, mtu - (l4 - 14) - thl, l4, 16)
