"""One request's bytes appended to a resumable upload: the lease it holds and the session that
writes, makes durable and commits them.

What a 204 reports is durable: the bytes are fsynced (local) or stored as S3 parts plus an
fsynced remainder, and then the offset is committed, journaled, while the lease is still
ours. A body without a checksum is also committed along the way (every 16 MiB, or whenever
an S3 part is full) and when the connection drops, so an interrupted client resumes from
nearly where it stopped; a body with a checksum is committed only once it is verified.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mediasvc.errors import MediaError, TooLarge
from mediasvc.records import MediaRecord, now_ms
from mediasvc.tus_parts import ChunkWriter, fsync_dir, remainder_file, remove_files, whole_file
from mediasvc.tus_protocol import Checksum, ChecksumMismatch, Locked
from mediasvc.tus_records import LeaseLost, PartMode, TusRepository, TusUpload, lease_changes

if TYPE_CHECKING:
    from mediasvc.auth import Principal
    from mediasvc.services.tus import TusUploads

log = logging.getLogger(__name__)
CHECKPOINT_BYTES = 16 * 1024 * 1024  # local files: the least a commit of a long body adds


@dataclass
class Lease:
    """Our hold on one upload, renewed as bytes arrive. It is trusted locally only up to
    two thirds of its time since the last renewal, so it is never used after it could
    have expired in the database."""

    repository: TusRepository
    upload_id: str
    owner: str
    seconds: float
    renewed_at: float = field(default_factory=time.monotonic)
    released: bool = False

    async def keep(self) -> None:
        """Renew when a third of the lease is gone; LeaseLost when it may have expired."""
        elapsed = time.monotonic() - self.renewed_at
        if elapsed < self.seconds / 3:
            return
        if elapsed >= self.seconds * 2 / 3:
            raise LeaseLost(self.upload_id)
        started = time.monotonic()
        until = now_ms() + int(self.seconds * 1000)
        if not await self.repository.renew(self.upload_id, self.owner, until):
            raise LeaseLost(self.upload_id)
        self.renewed_at = started

    async def release(self) -> None:
        """Give the upload back (best effort: an unreleased lease simply expires)."""
        if self.released:
            return
        self.released = True
        try:
            await asyncio.shield(self.repository.release(self.upload_id, self.owner))
        except MediaError as exc:
            log.warning("could not release the lease of upload %s: %s", self.upload_id, exc)


def lost_lease() -> Locked:
    """What a request whose lease was taken over answers."""
    return Locked("Another request took over this upload; resume from its offset")


class AppendSession:
    """The bytes of one PATCH (or creation-with-upload) on its way into an upload."""

    def __init__(
        self,
        service: TusUploads,
        upload: TusUpload,
        media: MediaRecord | None,
        lease: Lease,
        checksum: Checksum | None,
        principal: Principal,
    ) -> None:
        self.service = service
        self.upload = upload
        self.media = media
        self.lease = lease
        self.checksum = checksum
        self.principal = principal
        self.received = 0  # bytes of this request's body
        self.room = (upload.length if upload.length is not None else upload.size_limit) - (
            upload.offset
        )
        self._sha = service.running_hash(upload)
        self._check = checksum.hasher() if checksum else None
        self._writer: ChunkWriter | None = None
        self._committed = upload.offset
        self._committed_at = time.monotonic()
        self._stale: list[Path] = []
        self._busy = asyncio.Lock()
        self._closed = False

    @property
    def _folder(self) -> Path:
        return self.service.settings.tus_path

    @property
    def _part_size(self) -> int:
        return self.service.settings.s3_multipart_chunk_size

    async def open(self) -> None:
        """Open the file the bytes go to, cut back to what was committed."""
        upload = self.upload
        if upload.mode is PartMode.MULTIPART:
            path = remainder_file(self._folder, upload.id, upload.next_part)
            start = upload.offset - upload.stored_in_parts
        else:
            path, start = whole_file(self._folder, upload.id), upload.offset
        await self._open_writer(path, start)

    async def _open_writer(self, path: Path, start: int) -> None:
        hashers = [h for h in (self._sha, self._check) if h is not None]
        writer = ChunkWriter(path, start, self.service.io_executor, hashers)
        await writer.open()
        self._writer = writer

    @property
    def writer(self) -> ChunkWriter:
        assert self._writer is not None
        return self._writer

    async def write(self, data: bytes) -> None:
        """Append a piece of the body (413 past the upload's length or the chunk limit)."""
        async with self._busy:
            if self._closed:
                return
            self._check_room(len(data))
            try:
                await self.lease.keep()
            except LeaseLost:
                raise lost_lease() from None
            await self.writer.write(data)
            self.received += len(data)
            if self._check is None and self._checkpoint_due():
                await self._checkpoint()

    def _check_room(self, more: int) -> None:
        if self.received + more > self.room:
            if self.upload.length is not None:
                raise TooLarge(
                    f"The body runs past the upload's length of {self.upload.length} bytes"
                )
            raise self.service.too_large(self.upload)
        limit = self.service.settings.tus_max_chunk_size
        if self.received + more > limit:
            raise TooLarge(f"Request body exceeds the maximum of {limit} bytes")

    def _checkpoint_due(self) -> bool:
        """S3: a part is full. Local: 16 MB more and `tus_checkpoint_interval` since the last
        commit, so a fast client is not paused every 16 MB (each commit waits for an fsync
        and a database write: at 16 MB, that held a 50 MB PATCH back by about a third)."""
        if self.upload.mode is PartMode.MULTIPART:
            return self.writer.length >= self._part_size
        if self.writer.length - self._committed < CHECKPOINT_BYTES:
            return False
        interval = self.service.settings.tus_checkpoint_interval
        return time.monotonic() - self._committed_at >= interval

    async def finish(self) -> TusUpload:
        """The body is complete: verify its checksum, commit it, and complete the upload
        when it holds every byte. The lease is released in any case."""
        async with self._busy:
            try:
                if self._check is not None:
                    await self.writer.sync()
                    if self._check.digest() != self.checksum.digest:  # type: ignore[union-attr]
                        raise ChecksumMismatch("The chunk does not match its Upload-Checksum")
                await self._checkpoint()
                if self.upload.complete:
                    await self.service.complete(
                        self.upload, self._sha, self.principal, self.lease.owner
                    )
                return self.upload
            finally:
                await self._close()

    async def abandon(self) -> None:
        """The client went away mid-body: keep what arrived (unless it had a checksum,
        which can no longer be verified), then let the upload go."""
        async with self._busy:
            if self._closed:
                return
            try:
                if self._check is None and self._writer is not None:
                    await self._checkpoint()
            except (MediaError, LeaseLost, OSError) as exc:
                log.warning("could not keep the bytes of upload %s: %s", self.upload.id, exc)
            finally:
                await self._close()

    async def _checkpoint(self) -> None:
        """Make what arrived durable, then commit the new offset (while the lease is ours)."""
        await self.writer.sync()
        upload = self.upload
        if upload.mode is PartMode.MULTIPART and self.writer.length >= self._part_size:
            await self._put_part()
        offset = self._offset()
        if offset == self._committed and not self._stale:
            return
        upload.offset = offset
        try:
            await self.lease.keep()
            await self.service.repository.commit(upload.id, self.lease.owner, lease_changes(upload))
        except LeaseLost:
            raise lost_lease() from None
        self._committed = offset
        self._committed_at = time.monotonic()
        self.service.remember_hash(upload, self._sha)
        stale, self._stale = self._stale, []
        await self.service.run_io(remove_files, stale)
        await self.service.show_offset(upload)

    def _offset(self) -> int:
        if self.upload.mode is PartMode.MULTIPART:
            return self.upload.stored_in_parts + self.writer.length
        return self.writer.length

    async def _put_part(self) -> None:
        """Send the remainder as the next S3 part and start a new, empty remainder."""
        upload, media, blobs = self.upload, self.media, self.service.blobs
        assert media is not None
        if upload.multipart_id is None:
            upload.multipart_id = await blobs.start_parts(media.storage_key, media.content_type)
        number, size, path = upload.next_part, self.writer.length, self.writer.path
        tag = await blobs.put_part(media.storage_key, upload.multipart_id, number, path)
        await self.writer.close()
        upload.parts.append({"number": number, "etag": tag, "size": size})
        await self._open_writer(remainder_file(self._folder, upload.id, number + 1), 0)
        await self.service.run_io(fsync_dir, self._folder)
        self._stale.append(path)

    async def _close(self) -> None:
        self._closed = True
        if self._writer is not None:
            await self._writer.close()
        await self.lease.release()
