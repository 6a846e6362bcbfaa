"""Resumable uploads (tus 1.0): one pending media per upload, checked like a direct upload.

Creation checks everything a direct upload checks that can be known before the bytes (the
filename's extension, the entity and the caller's permission on it, the declared length
against the media type's limit) and records the media as `pending`; the upload's id is the
media's id. Bytes are appended under a lease (services/tus_append.py). When the last byte is
in, the file is sniffed, hashed and checked (services/arrival.py), stored, and processing is
queued; a file that fails the checks fails its media and nothing of it stays stored.

Partial uploads (concatenation) are no media: they are pieces that a final upload joins, in
order, into its file. Uploads not finished within `tus_upload_ttl` expire: 410, and the sweep
removes them with everything they received.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import socket
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mediasvc.auth import Principal
from mediasvc.errors import BadRequest, Conflict, Forbidden, MediaError, NotFound, TooLarge
from mediasvc.media_types import FileKind, extension_of, kind_for_extension
from mediasvc.models.base import TEXTS, given
from mediasvc.models.uploads import TusMetadata
from mediasvc.records import MediaRecord, MediaStatus, now_ms
from mediasvc.services.arrival import accept, content_problem, reject
from mediasvc.services.media import MediaService
from mediasvc.services.tus_append import AppendSession, Lease
from mediasvc.spool import owner_tag
from mediasvc.tus_parts import (
    file_size,
    files_of,
    join_files,
    read_head,
    remainder_file,
    remove_files,
    sha256_of,
    whole_file,
)
from mediasvc.tus_protocol import Checksum, Concat, Gone, Locked
from mediasvc.tus_records import PartMode, TusKind, TusRepository, TusState, TusUpload
from mediasvc.upload import size_error
from mediasvc.webhooks.events import EventType
from mediasvc.wire import canonical_uuid, decode_fields, form_bool

log = logging.getLogger(__name__)
T = TypeVar("T")
# Keys tus clients send on their own (tus-js-client's examples, Uppy): accepted, not used.
CLIENT_KEYS = frozenset({"filetype", "name", "type", "relativePath"})
METADATA_KEYS = frozenset(TusMetadata.__struct_fields__)
SWEEP_BATCH = 100
_KEPT_HASHES = 1024
_TAG = re.compile(r"[0-9]+-[0-9a-f]{8}")


@dataclass
class Created:
    """A new upload, and the session for the bytes its creation request carries (if any)."""

    upload: TusUpload
    session: AppendSession | None = None


class TusUploads:
    """Create, append to, complete, terminate and sweep resumable uploads."""

    def __init__(
        self, media: MediaService, repository: TusRepository, io_executor: Executor
    ) -> None:
        self.media = media
        self.repository = repository
        self.settings = media.settings
        self.blobs = media.blobs
        self.io_executor = io_executor
        self._owner: str | None = None
        self._hashes: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    # ---- creation

    async def create(
        self,
        principal: Principal,
        length: int | None,
        metadata: dict[str, str],
        concat: Concat | None,
        with_body: bool,
        checksum: Checksum | None = None,
    ) -> Created:
        """A new upload (a media's, or a partial one); a final one is joined at once. The
        first bytes, if the body carries them, are checked against `checksum` like a PATCH's:
        on a mismatch they are discarded and the upload stays, at offset 0."""
        if concat is not None and concat.final:
            if with_body:
                raise Forbidden("A final upload cannot carry bytes")
            return Created(await self._create_final(principal, concat, metadata))
        await self.run_io(self.settings.tus_path.mkdir, 0o700, True, True)
        now = now_ms()
        if concat is not None:
            upload = self._new_partial(principal, length, metadata, now)
        else:
            media, kind = self._new_media(principal, metadata, length, now)
            upload = self._new_upload(principal, media.id, TusKind.SINGLE, length, kind, now)
            upload.metadata = metadata
            await self.media.repository.insert(media)
        lease = self._fresh_lease(upload, now) if with_body else None
        try:
            await self.repository.insert(upload)
        except BaseException:
            if upload.kind is TusKind.SINGLE:
                await asyncio.shield(self.media.repository.delete(upload.id))
            raise
        if lease is None:
            return Created(upload)
        return Created(upload, await self._session(upload, lease, checksum, principal))

    def _new_partial(
        self, principal: Principal, length: int | None, metadata: dict[str, str], now: int
    ) -> TusUpload:
        limit = self.settings.largest_upload
        if length is not None and length > limit:
            raise TooLarge(f"Upload exceeds the maximum size of {limit} bytes")
        upload = TusUpload(
            id=str(uuid.uuid4()),
            owner=principal.sub,
            kind=TusKind.PARTIAL,
            length=length,
            size_limit=limit,
            created_at=now,
            expires_at=now + self.settings.tus_upload_ttl * 1000,
            metadata=metadata,
        )
        return upload

    def _new_upload(
        self,
        principal: Principal,
        upload_id: str,
        kind: TusKind,
        length: int | None,
        file_kind: FileKind,
        now: int,
    ) -> TusUpload:
        whole = kind is TusKind.FINAL or not self.blobs.takes_parts
        return TusUpload(
            id=upload_id,
            owner=principal.sub,
            kind=kind,
            length=length,
            size_limit=self.settings.size_limit(file_kind.media_type),
            created_at=now,
            expires_at=now + self.settings.tus_upload_ttl * 1000,
            mode=PartMode.FILE if whole else PartMode.MULTIPART,
        )

    def _new_media(
        self, principal: Principal, metadata: Mapping[str, str], length: int | None, now: int
    ) -> tuple[MediaRecord, FileKind]:
        """The pending media of an upload, checked as a direct upload is (400, 403, 413)."""
        unknown = sorted(set(metadata) - METADATA_KEYS - CLIENT_KEYS)
        if unknown:
            raise BadRequest(f"Unknown Upload-Metadata key '{unknown[0][:64]}'")
        fields = {name: value for name, value in metadata.items() if name in METADATA_KEYS}
        checked = decode_fields(TusMetadata, fields, self.settings)
        filename = checked.filename
        kind = self._kind_of(filename)
        entity = self.media.entity_for_upload(principal, checked)
        optional = given(checked, (*TEXTS, "display_order"))  # is_primary: once it is stored
        if length is not None:
            self._check_length(length, kind)
        media = self.media.new_media(principal, entity, kind, filename, optional)
        media.file_size = length or 0
        media.upload_offset = 0
        media.upload_expires_at = now + self.settings.tus_upload_ttl * 1000
        return media, kind

    @staticmethod
    def _kind_of(filename: str) -> FileKind:
        extension = extension_of(filename)
        kind = kind_for_extension(extension)
        if kind is None:
            if not extension:
                raise BadRequest("File name has no extension")
            printable = "".join(ch if ch.isprintable() else "?" for ch in extension)
            raise BadRequest(f"File extension '{printable[:32]}' is not allowed")
        return kind

    def _check_length(self, length: int, kind: FileKind) -> None:
        if length == 0:
            raise BadRequest("The submitted file is empty")
        limit = self.settings.size_limit(kind.media_type)
        if length > limit:
            raise size_error(kind.media_type, limit)

    def too_large(self, upload: TusUpload) -> TooLarge:
        """The 413 of an upload that would grow past its limit."""
        kind = self._media_kind(upload)
        if kind is None:
            return TooLarge(f"Upload exceeds the maximum size of {upload.size_limit} bytes")
        return size_error(kind.media_type, upload.size_limit)

    def _media_kind(self, upload: TusUpload) -> FileKind | None:
        if upload.kind is TusKind.PARTIAL:
            return None
        return kind_for_extension(extension_of(upload.metadata.get("filename", "")))

    # ---- concatenation

    async def _create_final(
        self, principal: Principal, concat: Concat, metadata: dict[str, str]
    ) -> TusUpload:
        """Join finished partial uploads into a new media's file, then complete it."""
        now = now_ms()
        media, kind = self._new_media(principal, metadata, None, now)
        partials = [await self._finished_partial(principal, pid) for pid in concat.parts]
        total = sum(p.length or 0 for p in partials)
        self._check_length(total, kind)
        media.file_size = total
        distinct = {p.id: p for p in partials}
        leases = [await self.lease(p) for p in distinct.values()]
        try:
            upload = self._new_upload(principal, media.id, TusKind.FINAL, total, kind, now)
            upload.metadata, upload.concat_of = metadata, list(concat.parts)
            lease = self._fresh_lease(upload, now)
            leases.append(lease)
            await self.media.repository.insert(media)
            await self.repository.insert(upload)
            sha = await self._join(upload, partials)
            upload.offset = total
            await self.repository.commit(upload.id, lease.owner, {"offset": total})
            await self.complete(upload, sha, principal, lease.owner)
            for piece in distinct.values():
                await self._discard(piece)
            return upload
        finally:
            for held in leases:
                await held.release()

    async def _finished_partial(self, principal: Principal, upload_id: str) -> TusUpload:
        upload = await self.owned(principal, upload_id)
        if upload.kind is not TusKind.PARTIAL:
            raise BadRequest("Upload-Concat final may only join partial uploads")
        if upload.state is not TusState.DONE:
            raise BadRequest(f"Partial upload {upload.id} is not finished")
        return upload

    async def _join(self, upload: TusUpload, partials: list[TusUpload]) -> Any:
        """The partial files, in order, as the final upload's file; its sha256 hasher."""
        folder = self.settings.tus_path
        sources = [whole_file(folder, p.id) for p in partials]
        hasher = hashlib.sha256()
        target = whole_file(folder, upload.id)

        def join() -> None:
            join_files(sources, target)
            sha256_of(target, hasher)

        await self.run_io(join)
        return hasher

    # ---- reading, appending, completing

    async def owned(self, principal: Principal, upload_id: str) -> TusUpload:
        """An upload of the caller (or any, for an admin): 404 otherwise, 410 once expired."""
        canonical = canonical_uuid(upload_id)
        upload = await self.repository.get(canonical) if canonical else None
        if upload is None or (upload.owner != principal.sub and not principal.is_admin):
            raise NotFound("Upload not found")
        if upload.state is TusState.RECEIVING and now_ms() >= upload.expires_at:
            raise Gone("The upload expired; start a new one")
        return upload

    async def status(self, principal: Principal, upload_id: str) -> TusUpload:
        """What HEAD reports. An upload whose last bytes are in but whose completion failed
        (storage was down) is completed first, so that no client takes it for done early."""
        upload = await self.owned(principal, upload_id)
        if upload.state is TusState.FAILED:
            raise Gone(upload.error or "The upload was rejected")
        if upload.state is TusState.RECEIVING and upload.complete:
            lease = await self.lease(upload)
            try:
                current = await self.repository.get(upload.id) or upload
                if current.state is TusState.RECEIVING:
                    await self.complete(current, None, principal, lease.owner)
                return current
            finally:
                await lease.release()
        return upload

    async def begin_append(
        self,
        principal: Principal,
        upload_id: str,
        offset: int,
        checksum: Checksum | None,
        declared_length: int | None,
        seen: Callable[[TusUpload], None],
    ) -> AppendSession | TusUpload:
        """Take the upload's lease and open a session for the body; a finished upload at its
        own offset is returned as it is (nothing to append)."""
        upload = await self.owned(principal, upload_id)
        seen(upload)
        if upload.kind is TusKind.FINAL:
            raise Forbidden("A final upload cannot be changed")
        if upload.state is not TusState.RECEIVING:
            self._check_offset(upload, offset)
            return upload
        lease = await self.lease(upload)
        try:
            upload = await self.repository.get(upload.id) or _gone()
            self._check_offset(upload, offset)
            if declared_length is not None:
                await self._declare_length(upload, declared_length, lease)
            seen(upload)
            if upload.complete:
                await self.complete(upload, None, principal, lease.owner)
                await lease.release()
                return upload
            return await self._session(upload, lease, checksum, principal)
        except BaseException:
            await lease.release()
            raise

    @staticmethod
    def _check_offset(upload: TusUpload, offset: int) -> None:
        if offset != upload.offset:
            raise Conflict(
                f"Upload-Offset {offset} does not match the upload's offset {upload.offset}"
            )

    async def _declare_length(self, upload: TusUpload, length: int, lease: Lease) -> None:
        if upload.length is not None:
            if length != upload.length:
                raise BadRequest("Upload-Length is already known and cannot change")
            return
        if length < upload.offset:
            raise BadRequest("Upload-Length is smaller than the bytes already received")
        if length > upload.size_limit:
            raise self.too_large(upload)
        if length == 0:
            raise BadRequest("The submitted file is empty")
        upload.length = length
        await self.repository.commit(upload.id, lease.owner, {"length": length})
        if upload.kind is not TusKind.PARTIAL:
            await self.media.repository.update(upload.id, {"file_size": length})

    async def _session(
        self, upload: TusUpload, lease: Lease, checksum: Checksum | None, principal: Principal
    ) -> AppendSession:
        media = None
        if upload.kind is not TusKind.PARTIAL:
            media = await self.media.repository.get(upload.id)
            if media is None or media.status is not MediaStatus.PENDING:
                await self._discard(upload)
                raise NotFound("Upload not found")
        session = AppendSession(self, upload, media, lease, checksum, principal)
        await session.open()
        return session

    async def complete(self, upload: TusUpload, sha: Any, principal: Principal, owner: str) -> None:
        """Every byte is in (`owner` holds the lease): check, store and process the media's
        file; a partial upload is only marked finished."""
        if upload.kind is TusKind.PARTIAL:
            await self._settle(upload, owner, TusState.DONE)
            return
        media = await self.media.repository.get(upload.id)
        if media is None:
            await self._discard(upload)
            raise NotFound("Upload not found")
        if media.status is not MediaStatus.PENDING:
            await self._settle(upload, owner, TusState.DONE)
            return
        arrival = await self._arrival(upload, media)
        problem = await content_problem(
            media, arrival.size, arrival.read_head, self.settings.sniff_max_tag_size
        )
        if problem is not None:
            await self._refuse(upload, media, arrival, problem, owner)
        digest = sha.hexdigest() if sha is not None else await arrival.sha256()
        await arrival.store()
        changes = {"sha256": digest, "file_size": arrival.size, "upload_offset": arrival.size}
        try:
            await accept(self.media, media, changes)
        except NotFound:  # deleted meanwhile: what we stored is removed again
            await self.media.deletions.delete([media.storage_key])
            raise
        await self._settle(upload, owner, TusState.DONE)
        await self._remove_files(upload)
        await self._make_primary(upload, principal)

    async def _refuse(
        self, upload: TusUpload, media: MediaRecord, arrival: Arrival, reason: str, owner: str
    ) -> None:
        await arrival.discard()
        await reject(self.media, media, reason)
        await self._settle(upload, owner, TusState.FAILED, reason)
        await self._remove_files(upload)
        raise BadRequest(reason)

    async def _remove_files(self, upload: TusUpload) -> None:
        paths = await self.run_io(files_of, self.settings.tus_path, upload.id)
        await self.run_io(remove_files, paths)

    async def _make_primary(self, upload: TusUpload, principal: Principal) -> None:
        wanted = upload.metadata.get("is_primary")
        if wanted is None or not form_bool(wanted, "is_primary"):
            return
        try:
            await self.media.set_primary(principal, upload.id)
        except MediaError as exc:
            log.warning("upload %s is stored but not made primary: %s", upload.id, exc)

    async def _arrival(self, upload: TusUpload, media: MediaRecord) -> Arrival:
        """Where the complete file is: on our disk, or (S3 multipart) in its place."""
        folder = self.settings.tus_path
        if upload.mode is PartMode.FILE or not upload.parts:
            path = (
                whole_file(folder, upload.id)
                if upload.mode is PartMode.FILE
                else remainder_file(folder, upload.id, 1)
            )
            size = await self.run_io(file_size, path)
            if size is not None:
                return FileArrival(self, media, path, size)
        else:
            await self._finish_parts(upload, media)
        size = await self.blobs.size_of(media.storage_key)
        if size is None:
            raise NotFound("The bytes of this upload are gone; start a new one")
        return StoredArrival(self, media, size)

    async def _finish_parts(self, upload: TusUpload, media: MediaRecord) -> None:
        """Send the remainder as the last part and join the parts (or find them joined)."""
        assert upload.multipart_id is not None
        parts = [(int(p["number"]), str(p["etag"])) for p in upload.parts]
        path = remainder_file(self.settings.tus_path, upload.id, upload.next_part)
        if (await self.run_io(file_size, path) or 0) > 0:
            key, upload_id, number = media.storage_key, upload.multipart_id, upload.next_part
            parts.append((number, await self.blobs.put_part(key, upload_id, number, path)))
        try:
            await self.blobs.finish_parts(media.storage_key, upload.multipart_id, parts)
        except FileNotFoundError:
            log.info("parts of upload %s were joined before", upload.id)

    async def _settle(
        self, upload: TusUpload, owner: str, state: TusState, error: str | None = None
    ) -> None:
        upload.state, upload.error = state, error
        await self.repository.commit(upload.id, owner, {"state": state, "error": error})

    # ---- termination and the sweep

    async def terminate(self, principal: Principal, upload_id: str) -> None:
        """DELETE: the upload and what it received go (a finished media stays)."""
        canonical = canonical_uuid(upload_id)
        upload = await self.repository.get(canonical) if canonical else None
        if upload is None or (upload.owner != principal.sub and not principal.is_admin):
            raise NotFound("Upload not found")
        lease = await self.lease(upload)
        try:
            await self._discard(upload)
        finally:
            await lease.release()

    async def _discard(self, upload: TusUpload, *, expired: bool = False) -> None:
        """Remove an upload: its S3 parts, its files, its pending media (an expired one with
        its upload.expired event), then its record."""
        if upload.state is TusState.RECEIVING and upload.kind is not TusKind.PARTIAL:
            media = await self.media.repository.get(upload.id)
            if upload.multipart_id and media is not None:
                await self.blobs.abort_parts(media.storage_key, upload.multipart_id)
            if media is not None and media.status is MediaStatus.PENDING:
                if expired:
                    await self.media.remove(media, EventType.UPLOAD_EXPIRED)
                else:
                    await self.media.repository.delete(upload.id)
        await self._remove_files(upload)
        await self.repository.delete(upload.id)
        self._hashes.pop(upload.id, None)

    async def sweep(self) -> dict[str, int]:
        """Remove uploads past their expiry (unfinished ones a grace period later)."""
        now = now_ms()
        cutoff = {TusState.RECEIVING: now - self.settings.pending_upload_grace * 1000}
        removed = 0
        for state in TusState:
            expired = await self.repository.expired(state, cutoff.get(state, now), SWEEP_BATCH)
            for upload in expired:
                try:
                    lease = await self.lease(upload)
                except Locked:
                    continue  # a request holds it; the next sweep will see it
                try:
                    await self._discard(upload, expired=True)
                    removed += 1
                finally:
                    await lease.release()
        if removed:
            log.info("sweep removed %d expired resumable uploads", removed)
        return {"expired_resumable_uploads": removed}

    # ---- leases, hashes, helpers

    @property
    def owner(self) -> str:
        """Who holds a lease we take: this machine and this process's spool owner tag."""
        if self._owner is None:
            self._owner = f"{socket.gethostname()}/{owner_tag(self.settings.spool_path)}"
        return self._owner

    def _holder(self) -> str:
        """A lease owner of its own for each lease, so that a request of this process can
        never commit under a lease another request of it took over."""
        return f"{self.owner}/{uuid.uuid4().hex[:12]}"

    def _fresh_lease(self, upload: TusUpload, now: int) -> Lease:
        """A lease recorded with a new upload (no one else can have it yet)."""
        upload.lease_owner = self._holder()
        upload.lease_until = now + int(self.settings.tus_lease * 1000)
        return Lease(self.repository, upload.id, upload.lease_owner, self.settings.tus_lease)

    async def lease(self, upload: TusUpload) -> Lease:
        """Hold the upload, or take it over from a dead process of this machine; 423 if a
        live request holds it."""
        seconds, me = self.settings.tus_lease, self._holder()
        now = now_ms()
        until = now + int(seconds * 1000)
        if await self.repository.take_lease(upload.id, me, now, until):
            return Lease(self.repository, upload.id, me, seconds)
        current = await self.repository.get(upload.id)
        if current is None:
            raise NotFound("Upload not found")
        holder = current.lease_owner
        dead = await self.run_io(_owner_dead, holder, self.settings.spool_path)
        if dead and await self.repository.break_lease(upload.id, holder, me, until):
            log.info("took over upload %s from %s, which is gone", upload.id, holder)
            return Lease(self.repository, upload.id, me, seconds)
        raise Locked("Another request is uploading to this upload; try again shortly")

    def running_hash(self, upload: TusUpload) -> Any:
        """A sha256 of the upload's bytes so far, if this process saw them all; else None
        (the file is then hashed once more at the end)."""
        kept = self._hashes.get(upload.id)
        if upload.offset == 0:
            return hashlib.sha256()
        if kept is not None and kept[0] == upload.offset:
            return kept[1].copy()
        return None

    def remember_hash(self, upload: TusUpload, hasher: Any) -> None:
        """Keep the hash of what was committed, for the next request of this upload."""
        if hasher is None:
            return
        self._hashes[upload.id] = (upload.offset, hasher.copy())
        self._hashes.move_to_end(upload.id)
        while len(self._hashes) > _KEPT_HASHES:
            self._hashes.popitem(last=False)

    async def show_offset(self, upload: TusUpload) -> None:
        """Let the media show how far its upload has come (best effort)."""
        if upload.kind is TusKind.PARTIAL:
            return
        try:
            await self.media.repository.update(upload.id, {"upload_offset": upload.offset})
        except MediaError as exc:
            log.warning("could not show the offset of upload %s: %s", upload.id, exc)

    async def run_io(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io_executor, func, *args)


class Arrival:
    """The complete file of an upload, wherever it is: its size, head, hash; keep or drop."""

    def __init__(self, service: TusUploads, media: MediaRecord, size: int) -> None:
        self.service = service
        self.media = media
        self.size = size

    async def read_head(self, length: int) -> bytes:
        raise NotImplementedError

    async def sha256(self) -> str:
        raise NotImplementedError

    async def store(self) -> None:
        """Put the file in its place in the blob store."""

    async def discard(self) -> None:
        raise NotImplementedError


class FileArrival(Arrival):
    """The file is on our disk (local storage, a joined final upload, a small S3 upload)."""

    def __init__(self, service: TusUploads, media: MediaRecord, path: Path, size: int) -> None:
        super().__init__(service, media, size)
        self.path = path

    async def read_head(self, length: int) -> bytes:
        return await self.service.run_io(read_head, self.path, length)

    async def sha256(self) -> str:
        return await self.service.run_io(sha256_of, self.path, hashlib.sha256())

    async def store(self) -> None:
        media = self.media
        await self.service.blobs.put_file(media.storage_key, self.path, media.content_type)

    async def discard(self) -> None:
        await self.service.run_io(remove_files, [self.path])


class StoredArrival(Arrival):
    """The file is already in the blob store (S3 parts joined in place)."""

    async def read_head(self, length: int) -> bytes:
        return await self.service.blobs.read_head(self.media.storage_key, length)

    async def sha256(self) -> str:
        return await self.service.blobs.digest(self.media.storage_key)

    async def discard(self) -> None:
        await self.service.media.deletions.delete([self.media.storage_key])


def _owner_dead(owner: str, spool_dir: Path) -> bool:
    """Whether a lease holder was a process of this machine that no longer runs: its spool
    owner lock is gone, or nobody holds it (blocking)."""
    host, _, rest = owner.partition("/")
    tag = rest.split("/", 1)[0]
    if host != socket.gethostname() or not _TAG.fullmatch(tag):
        return False
    try:
        fd = os.open(spool_dir / f"owner-{tag}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _gone() -> TusUpload:
    raise NotFound("Upload not found")
