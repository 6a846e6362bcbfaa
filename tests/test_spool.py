"""The spool writer: every byte lands on disk in order, hashed, whatever the chunking."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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


async def test_an_empty_upload_is_an_empty_file(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as executor:
        writer = SpoolWriter(tmp_path, executor)
        digest = await writer.finish()
    assert writer.path.read_bytes() == b""
    assert digest == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("when", ["creating", "writing a batch", "finishing"])
async def test_discard_before_the_thread_got_to_it_leaves_nothing(
    tmp_path: Path, when: str
) -> None:
    """The thread creates the file, then writes the batches: a discard that comes while
    that work still waits in the pool leaves nothing once it has run."""
    with ThreadPoolExecutor(1) as executor:
        gate = _block(executor)
        writer = SpoolWriter(tmp_path, executor)  # its file is created behind the gate
        finishing = None
        if when != "creating":
            gate.set()
            gate = _block(executor)
            await asyncio.wait_for(writer.write(b"x" * FLUSH_BYTES), 5)  # queued, not written
        if when == "finishing":
            finishing = asyncio.ensure_future(writer.finish())
            await asyncio.sleep(0)
        writer.discard()
        gate.set()
        if finishing is not None:
            await finishing
    assert list(tmp_path.glob("upload-*")) == []


def _block(executor: ThreadPoolExecutor) -> threading.Event:
    """Keep the pool's one thread busy, once what is queued before has run, until the event
    is set (or 10 s passed: a failing test does not hang)."""
    gate = threading.Event()
    executor.submit(gate.wait, 10)
    return gate
