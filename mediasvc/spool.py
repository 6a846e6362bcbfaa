"""Spool files: upload bytes go to disk as they arrive, hashed on the way."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from concurrent.futures import Executor
from pathlib import Path

FLUSH_BYTES = 1024 * 1024


class SpoolWriter:
    """Writes one upload to a spool file in a worker thread.

    Bytes are gathered into ~1 MB batches; each batch is hashed and written in the thread
    pool while the event loop goes on reading the next one. At most one batch is in
    flight, so memory stays bounded and the order of writes is kept.
    """

    def __init__(self, spool_dir: Path, executor: Executor, suffix: str = "") -> None:
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="upload-", suffix=suffix)
        self.path = Path(name)
        self.size = 0
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256()
        self._executor = executor
        self._batch: list[bytes] = []
        self._batch_size = 0
        self._in_flight: asyncio.Future[None] | None = None
        self._discarded = False
        self._written = 0  # touched only by the writing thread
        self._advised = 0

    async def write(self, data: bytes) -> None:
        """Queue bytes; waits only when the previous batch is still being written."""
        self._batch.append(data)
        self._batch_size += len(data)
        self.size += len(data)
        if self._batch_size >= FLUSH_BYTES:
            await self._flush()

    async def finish(self) -> str:
        """Write what is left, fsync, close; returns the sha256 hex digest."""
        await self._flush()
        if self._in_flight is not None:
            await self._in_flight
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_synced)
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Remove the spool file; safe to call at any time, more than once."""
        if self._discarded:
            return
        self._discarded = True
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        pending = self._in_flight
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _future: self._file.close())
        else:
            self._file.close()

    async def _flush(self) -> None:
        if self._in_flight is not None:
            await self._in_flight
            self._in_flight = None
        if not self._batch or self._discarded:
            return
        data = b"".join(self._batch)
        self._batch.clear()
        self._batch_size = 0
        loop = asyncio.get_running_loop()
        self._in_flight = loop.run_in_executor(self._executor, self._hash_and_write, data)

    def _hash_and_write(self, data: bytes) -> None:
        # hashlib and file writes release the GIL on large buffers: this overlaps with the loop.
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._written += len(data)
        self._start_writeback()

    def _start_writeback(self) -> None:
        """Ask the kernel to write the last batches out now and drop what is already on disk.

        Otherwise the whole upload is still dirty in the page cache when `finish` fsyncs it,
        and the client waits for all of it at once; this also keeps uploads from filling
        the cache with data nobody is about to read.
        """
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._file.fileno(), self._advised, 0, os.POSIX_FADV_DONTNEED)
        # Pages of the last batches may still be under writeback: look at them again next time.
        self._advised = max(0, self._written - 2 * FLUSH_BYTES)

    def _close_synced(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
