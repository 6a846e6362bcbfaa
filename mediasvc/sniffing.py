"""Which bytes of a file libmagic is shown: the first few kilobytes of its real content.

Audio files may open with an ID3v2 tag, and a tag holding cover art is often hundreds of
kilobytes: in the first bytes libmagic then sees only the tag ("application/octet-stream").
For audio the window starts after the leading tags, found from their headers (a syncsafe
size), so the bytes in between are never kept. Other containers put their signature at
offset 0 however large their headers grow (MP4 `ftyp` before a big `moov`, FLAC's `fLaC`
before its picture block, Ogg's first page, JPEG's SOI before EXIF): their first bytes
are enough.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

SNIFF_BYTES = 8192
_ID3_HEADER = 10


def id3_tag_length(head: bytes) -> int | None:
    """Length of the ID3v2 tag the bytes open with (header, body and footer), or None."""
    if len(head) < _ID3_HEADER or head[:3] != b"ID3" or head[3] not in (2, 3, 4):
        return None
    size = head[6:10]
    if head[4] == 0xFF or any(byte & 0x80 for byte in size):
        return None
    body = (size[0] << 21) | (size[1] << 14) | (size[2] << 7) | size[3]
    footer = _ID3_HEADER if head[5] & 0x10 else 0
    return _ID3_HEADER + body + footer


class SniffWindow:
    """The bytes to sniff of a file arriving in pieces: its first `size` bytes, or with
    `skip_tags` the first `size` bytes after its leading ID3v2 tags (up to `max_skip`
    bytes of tags; past that the tag itself is sniffed, and refused)."""

    def __init__(self, size: int = SNIFF_BYTES, *, skip_tags: bool, max_skip: int) -> None:
        self.size = size
        self.start = 0  # where the content to sniff begins
        self._skip_tags = skip_tags
        self._max_skip = max_skip
        self._seen = 0
        self._head = bytearray()  # the bytes from `start` on, at most `size`

    @property
    def head(self) -> bytes:
        """The bytes to show libmagic (fewer than `size` if the file ended first)."""
        return bytes(self._head)

    @property
    def full(self) -> bool:
        """Whether the window holds all it needs."""
        return len(self._head) >= self.size

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the file; True once the window is full."""
        view = memoryview(data)
        while view and not self.full:
            if self._seen < self.start:  # inside a tag: counted, not kept
                skipped = min(len(view), self.start - self._seen)
            else:
                skipped = min(len(view), self.size - len(self._head))
                self._head += view[:skipped]
            self._seen += skipped
            view = view[skipped:]
            self._skip_tag()
        return self.full

    def _skip_tag(self) -> None:
        if not self._skip_tags or len(self._head) < _ID3_HEADER:
            return
        length = id3_tag_length(bytes(self._head[:_ID3_HEADER]))
        if length is None or self.start + length > self._max_skip:
            self._skip_tags = False  # the content starts here
            return
        self.start += length
        del self._head[:length]


async def read_sniff_head(
    read_head: Callable[[int], Awaitable[bytes]], *, skip_tags: bool, max_skip: int
) -> bytes:
    """The bytes to sniff of a stored object, read with `read_head(length)` (its first
    `length` bytes): once, or again as far as its leading tags reach."""
    length, limit = SNIFF_BYTES, max_skip + SNIFF_BYTES
    while True:
        data = await read_head(length)
        window = SniffWindow(skip_tags=skip_tags, max_skip=max_skip)
        window.feed(data)
        if window.full or len(data) < length or length >= limit:
            return window.head
        length = min(window.start + SNIFF_BYTES, limit)
