"""Spool files: upload bytes go to disk as they arrive, hashed on the way."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from mediasvc.errors import full_disk_is_507

FLUSH_BYTES = 1024 * 1024
# The first bytes of a spool file stay in the page cache, where the worker that processes the
# upload reads them a moment later; past this, written pages are dropped.
CACHED_BYTES = 16 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range, do not wait for it


def _find_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range(2), or None where there is none (it is Linux-only)."""
    name = ctypes.util.find_library("c")
    function = getattr(ctypes.CDLL(name, use_errno=True), "sync_file_range", None) if name else None
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        function.restype = ctypes.c_int
    return function


_sync_file_range = _find_sync_file_range()


class SpoolWriter:
    """Writes one upload to a spool file in a worker thread.

    Bytes are gathered into ~1 MB batches; each batch is hashed and written in the thread
    pool while the event loop goes on reading the next one. At most one batch is in
    flight, so memory stays bounded and the order of writes is kept.
    """

    def __init__(self, spool_dir: Path, executor: Executor, suffix: str = "") -> None:
        with full_disk_is_507("a spool file"):
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
        self._advised = CACHED_BYTES  # pages before this offset stay cached

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
        with full_disk_is_507("a spool file"):
            while view:
                written = self._file.write(view)
                view = view[written:]
        self._written += len(data)
        self._start_writeback(len(data))

    def _start_writeback(self, length: int) -> None:
        """Have the kernel start writing the new bytes out now, without waiting for them.

        Otherwise the whole upload is still dirty in the page cache when `finish` fsyncs it,
        and the client waits for all of it at once. The first CACHED_BYTES stay cached: an
        image is read again within a second to be processed. Past that, what is already on
        disk is dropped, so a large video does not push everything else out of the cache.
        """
        if self._written <= CACHED_BYTES:
            if _sync_file_range is not None:  # a hint, like the one below: errors do not matter
                start = self._written - length
                _sync_file_range(self._file.fileno(), start, length, _SYNC_FILE_RANGE_WRITE)
            return
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._file.fileno(), self._advised, 0, os.POSIX_FADV_DONTNEED)
        # Pages of the last batches may still be under writeback: look at them again next time.
        self._advised = max(self._advised, self._written - 2 * FLUSH_BYTES)

    def _close_synced(self) -> None:
        with full_disk_is_507("a spool file"):
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()
