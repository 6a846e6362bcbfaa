"""Spool files: upload bytes go to disk as they arrive, hashed on the way.

Several processes (supervisord's numprocs, a worker node) may share one spool folder, and a
killed one leaves its files behind. So every process names its spool files and job work
folders with an owner tag and holds an flock on ``owner-<tag>.lock`` for as long as it lives;
the kernel drops the lock when the process dies, however it dies. A sweep removes the files
of tags whose lock nobody holds, and never touches those of a live process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from pathlib import Path

from mediasvc.errors import full_disk_is_507

log = logging.getLogger(__name__)

FLUSH_BYTES = 1024 * 1024
# A batch of many small chunks (a client that trickles) is written before it reaches
# FLUSH_BYTES, so that one writev takes it whole (IOV_MAX is 1024 on Linux).
MAX_BATCH_CHUNKS = 256
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


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing `length` bytes at `offset` out now, without waiting.

    Whoever fsyncs the file later then waits only for the last bytes written, not for all of
    them at once. A hint: where it does not exist or fails, the fsync does all the work.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


_OWNED = re.compile(r"(?:upload|job)-([0-9]+-[0-9a-f]{8})-")
_LOCK = re.compile(r"owner-([0-9]+-[0-9a-f]{8})\.lock")
_UNOWNED_PREFIXES = ("upload-", "job-", ".owner-")


class SpoolOwner:
    """This process's claim on a spool folder: a tag and the flock that proves it alive.

    The lock file is created and locked under a temporary name, then renamed into place, so
    a sweeper never sees an unlocked lock file of a live owner.
    """

    def __init__(self, spool_dir: Path) -> None:
        self.tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.users = 0  # services of this process that claimed it (see claim_spool)
        spool_dir.mkdir(parents=True, exist_ok=True)
        temporary = spool_dir / f".owner-{self.tag}.tmp"
        self._fd = os.open(temporary, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.lock_path = spool_dir / f"owner-{self.tag}.lock"
        os.rename(temporary, self.lock_path)

    def release(self) -> None:
        """Give the claim up (a clean stop); anything still tagged is then a leftover."""
        self.lock_path.unlink(missing_ok=True)
        os.close(self._fd)


# One owner per process and spool folder, for the life of the process: the lock must be held
# as long as any of its files may exist, and every writer of the process shares it.
_owners: dict[tuple[int, Path], SpoolOwner] = {}


# The key of `_owners` a folder as given stands for: resolving it walks the path (a system
# call per component), and every spool file asks.
_resolved: dict[tuple[int, Path], tuple[int, Path]] = {}


def owner_tag(spool_dir: Path) -> str:
    """This process's owner tag in `spool_dir` (taking the lock on first use)."""
    given = (os.getpid(), spool_dir)
    key = _resolved.get(given)
    if key is None:
        key = _resolved[given] = (given[0], spool_dir.resolve())
    owner = _owners.get(key)
    if owner is None:
        owner = _owners[key] = SpoolOwner(key[1])
    return owner.tag


def claim_spool(spool_dir: Path) -> str:
    """Take part in this process's claim on `spool_dir` (a service starting); the claim is
    given up when the last part of the process that took it lets it go."""
    tag = owner_tag(spool_dir)
    _owners[(os.getpid(), spool_dir.resolve())].users += 1
    return tag


def release_spool(spool_dir: Path) -> None:
    """Let go of a claim taken with `claim_spool` (a clean stop)."""
    key = (os.getpid(), spool_dir.resolve())
    owner = _owners.get(key)
    if owner is None:
        return
    owner.users -= 1
    if owner.users <= 0:
        del _owners[key]
        owner.release()


def _own_tags() -> set[str]:
    return {owner.tag for (pid, _), owner in _owners.items() if pid == os.getpid()}


def sweep_orphans(spool_dir: Path, unowned_max_age: float) -> int:
    """Remove spool files and job folders of processes that no longer run; returns how many.

    Entries without an owner tag (left by an older version) go once older than
    `unowned_max_age` seconds. Blocking: run it in a thread.
    """
    try:
        entries = list(os.scandir(spool_dir))
    except FileNotFoundError:
        return 0
    owned: dict[str, list[Path]] = {}
    removed = 0
    for entry in entries:
        match = _OWNED.match(entry.name) or _LOCK.fullmatch(entry.name)
        if match:
            owned.setdefault(match.group(1), []).append(Path(entry.path))
        elif entry.name.startswith(_UNOWNED_PREFIXES) and _older_than(entry, unowned_max_age):
            removed += _remove(Path(entry.path))
    mine = _own_tags()
    for tag, paths in owned.items():
        if tag not in mine:
            removed += _remove_if_orphaned(spool_dir / f"owner-{tag}.lock", paths)
    if removed:
        log.info("removed %d spool entries of processes that no longer run", removed)
    return removed


def _remove_if_orphaned(lock_path: Path, paths: list[Path]) -> int:
    """Remove `paths` (and the lock file last) if nobody holds the owner's lock."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # the lock goes last, after its files: the owner is gone
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live process holds it
        removed = sum(_remove(path) for path in paths if path != lock_path)
        lock_path.unlink(missing_ok=True)
        return removed
    finally:
        if fd >= 0:
            os.close(fd)


def _older_than(entry: os.DirEntry[str], age: float) -> bool:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > age
    except FileNotFoundError:
        return False


def _remove(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return 1


class SpoolWriter:
    """Writes one upload to a spool file in a worker thread, which also creates the file.

    Bytes are gathered into ~1 MB batches (or MAX_BATCH_CHUNKS chunks); each batch is hashed
    and written with one writev in the thread pool while the event loop goes on reading the
    next one. At most one batch is in flight, so memory stays bounded and the order of writes
    is kept. The loop only waits for a batch that is still being written when the next one is
    ready: usually it is long done, and handing a batch over costs no wake-up of the loop.
    """

    def __init__(self, spool_dir: Path, executor: Executor, suffix: str = "") -> None:
        name = f"upload-{owner_tag(spool_dir)}-{secrets.token_hex(8)}{suffix}"
        self.path = spool_dir / name
        self.size = 0
        self._fd: int | None = None  # opened and closed by the writing thread (or discard)
        self._hash = hashlib.sha256()
        self._executor = executor
        self._batch: list[bytes] = []
        self._batch_size = 0
        self._discarded = False
        # Creating a file is a costly system call (a third of a millisecond on the machines
        # measured): the thread does it, as the first thing in flight. Its error (a full
        # disk) is raised where a batch's would be.
        self._in_flight: Future[None] | None = executor.submit(self._create)
        self._written = 0  # touched only by the writing thread
        self._advised = CACHED_BYTES  # pages before this offset stay cached

    async def write(self, data: bytes) -> None:
        """Queue bytes; waits only when the previous batch is still being written."""
        pending = self.queue(data)
        if pending is not None:
            await pending

    def queue(self, data: bytes) -> Awaitable[None] | None:
        """Queue bytes without a coroutine of their own: the usual chunk only joins the batch,
        or hands a full one over; something to await comes back only when a full batch must
        wait for the previous one, still being written."""
        self._batch.append(data)
        self._batch_size += len(data)
        self.size += len(data)
        if self._batch_size < FLUSH_BYTES and len(self._batch) < MAX_BATCH_CHUNKS:
            return None
        pending = self._in_flight
        if pending is not None and not pending.done():
            return self._hand_over_after(pending)
        self._hand_over()
        return None

    async def _hand_over_after(self, pending: Future[None]) -> None:
        await asyncio.wrap_future(pending)
        self._hand_over()

    def _hand_over(self) -> None:
        """Start writing the full batch (the previous one is done: its error is raised here)."""
        self._collect_in_flight()
        if not self._discarded:
            chunks, size = self._take_batch()
            self._in_flight = self._executor.submit(self._hash_and_write, chunks, size)

    async def finish(self) -> str:
        """Write what is left and close (one hand-over); returns the sha256 hex digest.

        No fsync here: the store that takes the file makes it durable (the local store
        fsyncs it before its rename; S3 keeps a copy of its own), and a second fsync of the
        same file cost a device flush per upload, a few milliseconds under load.
        """
        await self._wait_in_flight()
        chunks, size = self._take_batch()
        self._in_flight = self._executor.submit(self._write_last, chunks, size)
        await self._wait_in_flight()
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Remove the spool file; safe to call at any time, more than once."""
        if self._discarded:
            return
        self._discarded = True
        pending = self._in_flight
        if pending is not None and not pending.done():  # the thread may be creating it
            pending.add_done_callback(lambda _future: self._remove())
        else:
            self._remove()

    def _remove(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _create(self) -> None:
        if not self._discarded:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            with full_disk_is_507("a spool file"):
                self._fd = os.open(self.path, flags, 0o600)

    def _opened(self) -> int:
        assert self._fd is not None, "the file is created before any batch is written"
        return self._fd

    async def _wait_in_flight(self) -> None:
        """The previous batch is written (its error, a full disk say, is raised here)."""
        pending = self._in_flight
        if pending is not None and not pending.done():
            await asyncio.wrap_future(pending)
        self._collect_in_flight()

    def _collect_in_flight(self) -> None:
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            pending.result()

    def _take_batch(self) -> tuple[list[bytes], int]:
        # The chunks go to the thread as they are: joining them would copy every byte once
        # more, into a fresh buffer whose pages the kernel must fault in and zero.
        chunks, size = self._batch, self._batch_size
        self._batch = []
        self._batch_size = 0
        return chunks, size

    def _hash_and_write(self, chunks: list[bytes], size: int) -> None:
        # hashlib and writev release the GIL on large buffers: this overlaps with the loop.
        if self._discarded:
            return
        for chunk in chunks:
            self._hash.update(chunk)
        fd = self._opened()
        with full_disk_is_507("a spool file"):
            write_all(fd, chunks)
        self._written += size
        self._start_writeback(fd, size)

    def _write_last(self, chunks: list[bytes], size: int) -> None:
        if self._discarded:
            return
        if chunks:
            self._hash_and_write(chunks, size)
        self._close()

    def _start_writeback(self, fd: int, length: int) -> None:
        """Have the kernel start writing the new bytes out now, without waiting for them.

        Otherwise the whole upload is still dirty in the page cache when the store fsyncs it,
        and the client waits for all of it at once. The first CACHED_BYTES stay cached: an
        image is read again within a second to be processed. Past that, what is already on
        disk is dropped, so a large video does not push everything else out of the cache.
        """
        if self._written <= CACHED_BYTES:
            start_writeback(fd, self._written - length, length)
            return
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, self._advised, 0, os.POSIX_FADV_DONTNEED)
        # Pages of the last batches may still be under writeback: look at them again next time.
        self._advised = max(self._advised, self._written - 2 * FLUSH_BYTES)


def write_all(fd: int, chunks: list[bytes]) -> None:
    """Write `chunks` in order with writev, going on after a partial write."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    while views:
        written = os.writev(fd, views)
        while written:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0
