"""The sniff window: audio is sniffed after its leading ID3v2 tags, whatever the chunking."""

from __future__ import annotations

import asyncio

import magic
import pytest

from mediasvc.sniffing import SNIFF_BYTES, SniffWindow, id3_tag_length, read_sniff_head

# An MPEG-1 layer III frame header (128 kb/s, 44.1 kHz) and its frame, repeated.
MP3_FRAMES = (b"\xff\xfb\x90\x64" + b"\x00" * 413) * 40


def id3_tag(body_size: int, *, footer: bool = False) -> bytes:
    """An ID3v2.4 tag whose body (a picture, say) is `body_size` bytes."""
    size = bytes((body_size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    flags = 0x10 if footer else 0
    body = b"APIC" + b"\x89PNG" * (body_size // 4)
    body = body[:body_size].ljust(body_size, b"\x00")
    tail = b"3DI\x04\x00" + bytes([flags]) + size if footer else b""
    return b"ID3\x04\x00" + bytes([flags]) + size + body + tail


def _window(data: bytes, chunk: int, max_skip: int = 1 << 24) -> SniffWindow:
    window = SniffWindow(skip_tags=True, max_skip=max_skip)
    for offset in range(0, len(data), chunk):
        if window.feed(data[offset : offset + chunk]):
            break
    return window


def test_id3_header_sizes() -> None:
    assert id3_tag_length(id3_tag(300_000)[:10]) == 300_010
    assert id3_tag_length(id3_tag(1000, footer=True)[:10]) == 1020
    assert id3_tag_length(b"ID3\x09\x00\x00\x00\x00\x00\x00") is None  # no such version
    assert id3_tag_length(b"ID3\x03\x00\x00\x80\x00\x00\x00") is None  # not syncsafe
    assert id3_tag_length(b"ID3 tags are fun") is None


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65536, 1 << 20])
def test_mp3_behind_large_and_chained_tags(chunk: int) -> None:
    """250 KB of cover art, then a second tag with a footer: the window holds MPEG frames."""
    data = id3_tag(250_000) + id3_tag(3000, footer=True) + MP3_FRAMES
    if chunk == 1:
        data = id3_tag(20_000) + MP3_FRAMES  # byte by byte: keep it quick
    window = _window(data, chunk)
    assert window.full and window.head == MP3_FRAMES[:SNIFF_BYTES]
    assert magic.from_buffer(window.head, mime=True) == "audio/mpeg"
    assert magic.from_buffer(data[:SNIFF_BYTES], mime=True) == "application/octet-stream"


def test_short_file_and_tags_beyond_the_limit() -> None:
    short = _window(id3_tag(100) + MP3_FRAMES[:1000], 512)
    assert not short.full and short.head == MP3_FRAMES[:1000]
    # Tags longer than allowed are not skipped: the tag itself is sniffed (and refused).
    long = _window(id3_tag(50_000) + MP3_FRAMES, 4096, max_skip=10_000)
    assert long.start == 0 and long.head[:3] == b"ID3"


def test_other_kinds_sniff_their_first_bytes() -> None:
    window = SniffWindow(skip_tags=False, max_skip=1 << 24)
    data = id3_tag(20_000) + MP3_FRAMES
    assert window.feed(data) and window.head == data[:SNIFF_BYTES]


def test_stored_object_is_read_only_as_far_as_needed() -> None:
    data = id3_tag(250_000) + MP3_FRAMES
    reads: list[int] = []

    async def read_head(length: int) -> bytes:
        reads.append(length)
        return data[:length]

    head = asyncio.run(read_sniff_head(read_head, skip_tags=True, max_skip=1 << 24))
    assert head == MP3_FRAMES[:SNIFF_BYTES]
    assert reads == [SNIFF_BYTES, 250_010 + SNIFF_BYTES]
