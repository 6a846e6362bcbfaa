"""The files on the server's disk that hold the bytes of resumable uploads (under `tus_dir`).

A local-storage upload (and every partial upload) grows one file, ``<id>.bin``, that is moved
into place at the end. An S3 upload sends parts of at least `s3_multipart_chunk_size` to an
S3 multipart upload and keeps only the remainder here, as ``<id>.<n>.part``: the bytes that
will become part `n`. A new remainder file is started for each part number, so the file the
committed state points at is never rewritten: a crash between a part's upload and its commit
leaves the old remainder intact, and a file longer than the committed state says (bytes
received but never acknowledged) is cut back before the next append.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from mediasvc.errors import full_disk_is_507
from mediasvc.spool import start_writeback, write_all

BATCH_BYTES = 1024 * 1024
MAX_BATCH_CHUNKS = 256
COPY_CHUNK = 4 * 1024 * 1024


def whole_file(folder: Path, upload_id: str) -> Path:
    """The file of an upload kept whole on disk."""
    return folder / f"{upload_id}.bin"


def remainder_file(folder: Path, upload_id: str, number: int) -> Path:
    """The bytes of an S3 upload that will become part `number`."""
    return folder / f"{upload_id}.{number}.part"


def files_of(folder: Path, upload_id: str) -> list[Path]:
    """Every file an upload has on disk (blocking: run it in a thread)."""
    return sorted(folder.glob(f"{upload_id}.*"))


def remove_files(paths: Iterable[Path]) -> None:
    """Remove files that may or may not exist (blocking)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def file_size(path: Path) -> int | None:
    """The size of a file, or None when there is none (blocking)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def read_head(path: Path, length: int) -> bytes:
    """The first `length` bytes of a file (blocking)."""
    with open(path, "rb") as handle:
        return handle.read(length)


def sha256_of(path: Path, hasher: Any) -> str:
    """Feed the whole file to `hasher`; its hex digest (blocking)."""
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            hasher.update(chunk)
    return str(hasher.hexdigest())


def join_files(sources: list[Path], target: Path) -> None:
    """Write the concatenation of `sources` to `target`, fsynced (blocking)."""
    with full_disk_is_507("a joined upload"), open(target, "wb") as out:
        for source in sources:
            with open(source, "rb") as handle:
                shutil.copyfileobj(handle, out, COPY_CHUNK)
        out.flush()
        os.fsync(out.fileno())


class ChunkWriter:
    """Appends a PATCH body to a file from a known position, in the I/O thread.

    The file is cut back to `start` first (bytes past the committed offset were never
    acknowledged). Bytes are gathered into ~1 MB batches; each is written and fed to the
    `hashers` in the thread pool (hashlib and os.write release the GIL) while the loop reads
    the next one; at most one batch is in flight, so memory stays bounded. The kernel starts
    writing each batch out at once, so the fsync of a checkpoint waits only for the last ones.
    """

    def __init__(self, path: Path, start: int, executor: Executor, hashers: list[Any]) -> None:
        self.path = path
        self.start = start
        self.received = 0  # bytes handed to write()
        self._executor = executor
        self._hashers = hashers
        self._batch: list[bytes] = []
        self._batch_size = 0
        self._in_flight: Future[None] | None = None
        self._fd = -1
        self._written = start  # where the next batch goes; touched only by the writing thread

    async def open(self) -> None:
        """Open the file (made if need be) and cut it back to `start`."""
        self._fd = await self._run(self._open)

    def _open(self) -> int:
        with full_disk_is_507("a resumable upload"):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, self.start)
                os.lseek(fd, self.start, os.SEEK_SET)
            except BaseException:
                os.close(fd)
                raise
        return fd

    @property
    def length(self) -> int:
        """How long the file is once everything received is written."""
        return self.start + self.received

    async def write(self, data: bytes) -> None:
        """Queue bytes; waits only when the previous batch is still being written."""
        self._batch.append(data)
        self._batch_size += len(data)
        self.received += len(data)
        if self._batch_size >= BATCH_BYTES or len(self._batch) >= MAX_BATCH_CHUNKS:
            await self._wait_in_flight()
            self._in_flight = self._executor.submit(self._write, self._take_batch())

    async def sync(self) -> None:
        """Everything received written and fsynced: durable."""
        await self._wait_in_flight()
        batch = self._take_batch()
        await self._run(self._write_and_sync, batch)

    async def close(self) -> None:
        """Close the file (after any batch in flight); safe to call more than once."""
        with contextlib.suppress(Exception):
            await self._wait_in_flight()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    async def _wait_in_flight(self) -> None:
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            await asyncio.wrap_future(pending)

    def _take_batch(self) -> list[bytes]:
        batch, self._batch, self._batch_size = self._batch, [], 0
        return batch

    def _write(self, chunks: list[bytes]) -> None:
        for hasher in self._hashers:
            for chunk in chunks:
                hasher.update(chunk)
        with full_disk_is_507("a resumable upload"):
            write_all(self._fd, chunks)
        size = sum(len(chunk) for chunk in chunks)
        start_writeback(self._fd, self._written, size)
        self._written += size

    def _write_and_sync(self, chunks: list[bytes]) -> None:
        if chunks:
            self._write(chunks)
        with full_disk_is_507("a resumable upload"):
            os.fsync(self._fd)

    async def _run(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)


def fsync_dir(path: Path) -> None:
    """Make the names in a folder durable (a new file, a removed one) (blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
