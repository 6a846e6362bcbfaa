"""The spool writer: every byte lands on disk in order, hashed, whatever the chunking."""

from __future__ import annotations

import asyncio
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mediasvc.spool import CACHED_BYTES, FLUSH_BYTES, SpoolWriter


async def test_spools_past_the_cached_part_in_order(tmp_path: Path) -> None:
    """Odd-sized chunks that straddle batches and the cache threshold: the file is exact."""
    data = os.urandom(CACHED_BYTES + 3 * FLUSH_BYTES + 12345)
    sizes = [1, 4095, 65536, 262144 + 7, FLUSH_BYTES - 3]
    with ThreadPoolExecutor(2) as executor:
        writer = SpoolWriter(tmp_path, executor, suffix=".bin")
        offset = index = 0
        while offset < len(data):
            size = sizes[index % len(sizes)]
            await writer.write(data[offset : offset + size])
            offset += size
            index += 1
        digest = await writer.finish()
    assert writer.size == len(data)
    assert writer.path.suffix == ".bin"
    assert writer.path.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()


async def test_discard_mid_write_leaves_nothing(tmp_path: Path) -> None:
    """Discarding while a batch is still being written removes the file and closes it."""
    with ThreadPoolExecutor(1) as executor:
        writer = SpoolWriter(tmp_path, executor)
        await writer.write(b"x" * (2 * FLUSH_BYTES))  # a batch goes to the thread
        writer.discard()
        writer.discard()  # twice is harmless
        await asyncio.sleep(0)
    assert list(tmp_path.glob("upload-*")) == []
