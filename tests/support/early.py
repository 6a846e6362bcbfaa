"""Helpers for early-answer tests: an over-limit image, a multipart file, raw sockets."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024


def oversized_image(folder: Path, jpeg: bytes, size: int = 12 * MB) -> Path:
    """A file that sniffs as JPEG and is `size` bytes: over the 10 MB image limit."""
    path = folder / "big.jpg"
    path.write_bytes(jpeg + os.urandom(size - len(jpeg)))
    return path


@dataclass
class RawAnswer:
    """A response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> object:
        return json.loads(self.body)


async def read_answer(reader: asyncio.StreamReader, timeout: float = 30) -> RawAnswer:
    """One HTTP/1.1 response with a Content-Length body (skipping any 1xx before it)."""
    while True:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if status >= 200:
            break
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout)
    return RawAnswer(status, headers, body)


async def send_head(port: int, head: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection to the service and send a request head (and nothing else)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin1"))
    await writer.drain()
    return reader, writer
