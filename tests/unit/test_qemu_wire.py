"""QEMU's socket NIC framing (vnet.wire.qemu): a stream cut into frames whatever the
pieces it arrives in, and cut off at a length QEMU itself would refuse."""
from __future__ import annotations

import os

import pytest

from vnet.wire.qemu import (
    MAX_FRAME,
    FramingError,
    StreamReader,
    frame_length,
    stream_encode,
)


def frames(*sizes: int) -> list[bytes]:
    return [bytes([i % 251]) * 12 + bytes([0x08, 0x00]) + os.urandom(n - 14) for i, n in enumerate(sizes)]


def test_length_is_four_bytes_big_endian():
    assert frame_length(b"x" * 60) == b"\x00\x00\x00\x3c"
    assert frame_length(b"x" * 0x10203) == b"\x00\x01\x02\x03"
    assert stream_encode(b"abcdefghijklmn") == b"\x00\x00\x00\x0eabcdefghijklmn"


def test_one_read_holding_many_frames():
    fs = frames(60, 1514, 9014, 14)
    assert StreamReader().feed(b"".join(map(stream_encode, fs))) == fs


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 4097])
def test_frames_split_at_every_byte(piece):
    fs = frames(60, 1514, 64000, 61)
    wire = b"".join(map(stream_encode, fs))
    reader = StreamReader()
    got = []
    for i in range(0, len(wire), piece):
        got += reader.feed(memoryview(wire)[i:i + piece])
    assert got == fs
    assert reader.pending == 0


def test_partial_length_is_kept():
    reader = StreamReader()
    f = frames(100)[0]
    wire = stream_encode(f)
    assert reader.feed(wire[:2]) == []
    assert reader.pending == 2
    assert reader.feed(wire[2:50]) == []
    assert reader.feed(wire[50:]) == [f]


def test_runt_is_skipped_and_the_stream_stays_in_step():
    fs = frames(60, 70)
    reader = StreamReader()
    got = reader.feed(stream_encode(fs[0]) + stream_encode(b"tiny") + frame_length(b"")
                      + stream_encode(fs[1]))
    assert got == fs
    assert reader.runts == 2


def test_the_longest_frame_qemu_takes_is_taken():
    f = bytes(MAX_FRAME)
    assert StreamReader().feed(stream_encode(f)) == [f]


def test_an_absurd_length_cuts_the_stream():
    reader = StreamReader()
    good = frames(60)[0]
    reader.feed(stream_encode(good)[:10])
    with pytest.raises(FramingError, match=f"length {MAX_FRAME + 1} is more than {MAX_FRAME}") as e:
        reader.feed(stream_encode(good)[10:] + (MAX_FRAME + 1).to_bytes(4, "big") + b"junk")
    assert e.value.frames == [good]  # sent right before the bad length: delivered
    assert reader.pending == 0
    # "GET / HTTP/1.1" read as a length: 0x47455420
    with pytest.raises(FramingError):
        StreamReader().feed(b"GET / HTTP/1.1\r\n")
