"""Media records: create from an upload, list, read, change, delete, choose the primary."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from msgspec import UNSET

from mediasvc.auth import Principal
from mediasvc.errors import BadRequest, Conflict, Forbidden, MediaError, NotFound, Unavailable
from mediasvc.filenames import clean_filename
from mediasvc.listing import Cursor, MediaFilters, MediaPage, MediaQuery
from mediasvc.media_types import FileKind
from mediasvc.models.base import TEXTS, given
from mediasvc.models.media import (
    BulkDeleteRequest,
    BulkDeleteResult,
    BulkFailure,
    BulkUpdateRequest,
    BulkUpdateResult,
    ListParams,
    Media,
    MediaUpdate,
    ProcessRequest,
)
from mediasvc.models.uploads import (
    BatchCreated,
    BatchError,
    BatchFields,
    BatchResult,
    BatchSummary,
    CheckAnswer,
    CheckRequest,
    CheckResult,
    EntityRef,
    UploadFields,
    UploadFormFields,
)
from mediasvc.pipeline.jobs import applicable_operations, default_operations, job_lane, new_job
from mediasvc.records import Doc, MediaRecord, MediaStatus, now_ms
from mediasvc.repository import JobActive, MediaRepository, PrimaryTaken
from mediasvc.services.deletions import FileDeletions
from mediasvc.services.presenter import present_media
from mediasvc.settings import Settings
from mediasvc.storage import BlobStore
from mediasvc.upload import ReceivedFile
from mediasvc.webhooks.events import EventType, created_events
from mediasvc.webhooks.removals import RemovalEvents
from mediasvc.wire import canonical_uuid, decode_fields

log = logging.getLogger(__name__)

NO_PERMISSION = "No permission to upload media for this entity"
_PRIMARY_RETRIES = 10


class MediaService:
    """Everything the API does with media records and their files."""

    def __init__(
        self,
        repository: MediaRepository,
        blobs: BlobStore,
        settings: Settings,
        events: RemovalEvents,
        clock: Callable[[], int] = now_ms,
        on_job_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.repository = repository
        self.blobs = blobs
        self.settings = settings
        self.events = events
        self.clock = clock
        self.on_job_queued = on_job_queued
        self.deletions = FileDeletions(repository, blobs, clock)

    # ---- uploads

    def check_upload_target(self, principal: Principal, fields: Mapping[str, str]) -> None:
        """Refuse early (before file bytes are read) when the entity is already known to be bad."""
        if "entity_type" in fields and "entity_id" in fields:
            entity = {name: fields[name] for name in ("entity_type", "entity_id")}
            self.entity_for_upload(principal, decode_fields(EntityRef, entity, self.settings))

    async def create_from_upload(
        self, principal: Principal, fields: UploadFields, received: ReceivedFile
    ) -> MediaRecord:
        """Store a spooled upload durably, record it, and queue its processing."""
        entity = self.entity_for_upload(principal, fields)
        metadata = given(fields, (*TEXTS, "display_order"))
        media = self.new_media(principal, entity, received.kind, received.raw_filename, metadata)
        media.file_size, media.sha256 = received.size, received.sha256
        operations = self.operations_for(media)
        media.status = MediaStatus.PROCESSING if operations else MediaStatus.READY
        await self.blobs.put_file(media.storage_key, received.spool.path, media.content_type)
        await self._record(media, operations)
        if fields.is_primary:
            try:
                media = await self._make_primary(media, {})
            except BaseException:  # a refused upload leaves nothing behind
                await asyncio.shield(self._undo_create(media))
                raise
        return media

    async def upload(
        self, principal: Principal, fields: UploadFormFields, received: ReceivedFile
    ) -> tuple[MediaRecord, bool]:
        """A direct upload: with `dedupe`, the entity's media of the same content if it has
        one (nothing is stored; False), else the new media (True)."""
        if fields.dedupe:
            existing = await self.same_content(self.entity_for_upload(principal, fields), received)
            if existing is not None:
                return existing, False
        return await self.create_from_upload(principal, fields, received), True

    async def same_content(
        self, entity: tuple[str, str], received: ReceivedFile
    ) -> MediaRecord | None:
        """The entity's (oldest) media with the content of a received file, if any."""
        (found,) = await self.repository.same_contents(*entity, [(received.sha256, received.size)])
        return found

    async def create_batch(
        self,
        principal: Principal,
        entity: BatchFields,
        files: list[ReceivedFile],
        rejected: list[dict[str, str]],
    ) -> BatchResult:
        """Store each file of a batch on its own; bad files are reported, not fatal. With
        `dedupe`, files whose content the entity has are listed in `existing` instead."""
        target = self.entity_for_upload(principal, entity)
        if not files and not rejected:
            raise BadRequest("No file was submitted in the 'files' field")
        fields = UploadFields(entity_type=entity.entity_type, entity_id=entity.entity_id)
        created: list[BatchCreated] = []
        existing: list[BatchCreated] = []
        errors = [BatchError(filename=r["filename"], error=r["error"]) for r in rejected]
        trouble: MediaError | None = None  # the service's own (storage down, disk full)
        for received in files:
            try:
                found = await self.same_content(target, received) if entity.dedupe else None
                media = found or await self.create_from_upload(principal, fields, received)
            except MediaError as exc:
                errors.append(BatchError(filename=received.raw_filename[:255], error=exc.message))
                trouble = exc if exc.status >= 500 else trouble
                continue
            listed = BatchCreated(id=media.id, filename=media.filename, status=media.status)
            (existing if found else created).append(listed)
        if trouble is not None and not created and not existing:
            raise trouble  # not the files' fault: the batch gets the 503 or 507 itself
        return _batch_result(created, existing, errors, dedupe=entity.dedupe)

    def new_media(
        self,
        principal: Principal,
        entity: tuple[str, str],
        kind: FileKind,
        raw_filename: str,
        metadata: Mapping[str, Any],
    ) -> MediaRecord:
        """A new pending media record with a server-made storage key (not yet stored)."""
        return MediaRecord.new(
            entity=entity,
            uploaded_by=principal.sub,
            kind_media_type=kind.media_type,
            content_type=kind.content_type,
            extension=kind.extension,
            filename=clean_filename(raw_filename, kind.extension, self.settings.max_filename_bytes),
            now=self.clock(),
            **metadata,
        )

    def operations_for(self, media: MediaRecord) -> list[str]:
        """What a new upload of this media's type gets processed into."""
        return default_operations(
            media.media_type,
            media.content_type,
            self.settings.image_operations,
            self.settings.video_operations,
        )

    async def _record(self, media: MediaRecord, operations: list[str]) -> None:
        # The file is stored first, so a record never points at nothing; if recording
        # fails, the file is removed again and the client sees the error. The record
        # carries its events (media.created, and media.ready if it needs no processing).
        ready = media.status is MediaStatus.READY
        media.outbox = [event.encode() for event in created_events(ready, self.clock())]
        job = (
            new_job(media.id, operations, media.created_at, lane=job_lane(media))
            if operations
            else None
        )
        if job is not None:
            media.job = job.summary()
        try:
            await self.repository.insert(media, job)
        except BaseException:
            await asyncio.shield(self._undo_create(media))
            raise
        if job is not None:
            self.on_job_queued()

    async def _undo_create(self, media: MediaRecord) -> None:
        try:
            deleted = await self.repository.delete(media.id)
            if deleted is not None and set(media.outbox) - set(deleted.outbox):
                # the relay took its media.created already: the receivers hear it is gone
                data = self.present(deleted, self.events.base_url)
                await self.events.removed(EventType.MEDIA_DELETED, deleted, data)
        except Exception:  # the database may be the thing that failed
            log.exception("could not remove the record of failed upload %s", media.id)
        await self.deletions.delete([media.storage_key])

    def entity_for_upload(self, principal: Principal, entity: EntityRef) -> tuple[str, str]:
        """The (entity_type, entity_id) of an upload, in canonical form; 403 without permission."""
        entity_type, entity_id = entity.entity_type, str(entity.entity_id)
        if not principal.may_act_on(entity_type, entity_id):
            raise Forbidden(NO_PERMISSION)
        return entity_type, entity_id

    # ---- deduplication

    async def check_contents(self, principal: Principal, request: CheckRequest) -> CheckAnswer:
        """Which of these contents the entity already has: for each file, in order, the id of
        its oldest media with that sha256 and size (not a pending or failed one), or None."""
        entity = self.entity_for_upload(principal, request)
        asked = [(ref.sha256.lower(), ref.size) for ref in request.files]
        unique = list(dict.fromkeys(asked))
        found = dict(zip(unique, await self.repository.same_contents(*entity, unique), strict=True))
        return CheckAnswer(
            results=[
                CheckResult(sha256=sha256, size=size, id=_id_of(found[(sha256, size)]))
                for sha256, size in asked
            ]
        )

    # ---- reading

    def parse_list_query(self, principal: Principal, params: ListParams) -> MediaQuery:
        """The repository's query for a list request; a limit above the largest is clamped."""
        filters = MediaFilters(
            entity_type=_filter(params.entity_type),
            entity_id=_filter(params.entity_id),
            media_type=_filter(params.media_type),
            status=_filter(params.status),
        )
        limit = self.settings.default_page_size if params.limit is UNSET else params.limit
        return MediaQuery(
            filters,
            params.search,
            principal.visibility(),
            min(limit, self.settings.max_page_size),
            params.offset,
            Cursor.decode(params.cursor) if params.cursor else None,
        )

    async def list_media(self, query: MediaQuery) -> MediaPage:
        """A page of the media the caller may see, in display order, newest first."""
        return await self.repository.list_media(query)

    async def get_visible(self, principal: Principal, media_id: str) -> MediaRecord:
        """One media the caller may see; otherwise 404, whether or not it exists."""
        canonical = canonical_uuid(media_id)
        media = await self.repository.get(canonical) if canonical else None
        if media is None or not principal.may_see(media):
            raise NotFound("Media not found")
        return media

    async def get_visible_by_id(self, media_id: str) -> MediaRecord:
        """One media by id, for a caller already checked."""
        return await self.repository.get(media_id) or _gone()

    async def view(self, principal: Principal, media_id: str) -> MediaRecord:
        """Read one media, counting a view."""
        media = await self.get_visible(principal, media_id)
        counted = await self.repository.increment(media.id, "view_count")
        return counted or await self._uncounted(media.id)

    async def download(self, principal: Principal, media_id: str) -> MediaRecord:
        """Count a download of one media and return it (the handler redirects to its file)."""
        media = await self.get_visible(principal, media_id)
        if media.status is MediaStatus.PENDING:
            raise Conflict("The file of this media has not been uploaded yet")
        counted = await self.repository.increment(media.id, "download_count")
        return counted or await self._uncounted(media.id)

    async def _uncounted(self, media_id: str) -> MediaRecord:
        """A read whose counter could not be written (the database refused the write, a full
        disk say) still answers: the media if it exists, else 404."""
        return await self.repository.get(media_id) or _gone()

    async def _not_written(self, media_id: str) -> MediaRecord:
        """No record came back from a change: 404 if the media is gone, else the database did
        not take the write (a full disk, say) and the client should try again: 503."""
        if await self.repository.get(media_id) is None:
            raise NotFound("Media not found")
        raise Unavailable("The database could not store the change; try again shortly")

    # ---- changing

    async def update(self, principal: Principal, media_id: str, patch: MediaUpdate) -> MediaRecord:
        """PATCH: change editable metadata; is_primary true/false moves the primary mark."""
        media = await self.get_visible(principal, media_id)
        return await self._apply(media, given(patch))

    async def _apply(self, media: MediaRecord, changes: dict[str, Any]) -> MediaRecord:
        is_primary = changes.pop("is_primary", None)
        changes["updated_at"] = self.clock()
        if is_primary is True:
            return await self._make_primary(media, changes)
        unset: tuple[str, ...] = ()
        if is_primary is False:
            changes["is_primary"] = False
            unset = ("primary_slot",)
        updated = await self.repository.update(media.id, changes, unset)
        return updated or await self._not_written(media.id)

    async def set_primary(self, principal: Principal, media_id: str) -> MediaRecord:
        """Make one media the primary of its entity; exactly one stays primary under races."""
        media = await self.get_visible(principal, media_id)
        return await self._make_primary(media, {"updated_at": self.clock()})

    async def _make_primary(self, media: MediaRecord, changes: Doc) -> MediaRecord:
        for _ in range(_PRIMARY_RETRIES):
            try:
                return await self.repository.make_primary(media, changes) or _gone()
            except PrimaryTaken:
                # another request won this round: clear it and retry, out of step with it
                await asyncio.sleep(random.uniform(0.005, 0.03))
        raise Conflict("The primary media of this entity is changing; try again")

    async def delete(self, principal: Principal, media_id: str) -> None:
        """Delete the record first (so nothing points at a missing file), then its files."""
        media = await self.get_visible(principal, media_id)
        await self._delete(media)

    async def _delete(self, media: MediaRecord) -> None:
        deleted = await self.remove(media, EventType.MEDIA_DELETED)
        if deleted is None:
            raise NotFound("Media not found")
        # A presigned URL still valid can put the original back: delete it again after that.
        grace = self.settings.pending_upload_grace * 1000
        url_dead = (deleted.upload_expires_at or 0) + grace
        not_before = url_dead if url_dead > self.clock() else 0
        await self.deletions.delete(deleted.stored_keys(), deleted.id, not_before)

    async def remove(self, media: MediaRecord, kind: EventType) -> MediaRecord | None:
        """Delete a record with its event (media.deleted, upload.expired): the event is
        written before, with the media as the API shows it, and confirmed after; the record
        deleted, or None if it was gone already."""
        data = self.present(media, self.events.base_url)
        ids = await self.events.announce(kind, media, data)
        deleted = await self.repository.delete(media.id)
        if deleted is None:
            await self.events.discard(ids)
            return None
        await self.events.confirm(ids, deleted, data)
        return deleted

    # ---- processing

    async def process(
        self, principal: Principal, media_id: str, request: ProcessRequest
    ) -> MediaRecord:
        """Queue processing operations (this also retries a failed media)."""
        media = await self.get_visible(principal, media_id)
        operations, options = self._processing_request(media, request)
        if media.status is MediaStatus.PENDING:
            raise Conflict("The file of this media has not been uploaded yet")
        now = self.clock()
        job = new_job(media.id, operations, now, options, lane=job_lane(media))
        try:
            await self.repository.insert_job(job)  # the database keeps one active job per media
        except JobActive:
            raise Conflict("Processing of this media is already queued") from None
        changes = {
            "status": MediaStatus.PROCESSING,
            "error": None,
            "job": job.summary(),
            "updated_at": now,
        }
        # A dispatcher may have claimed (or even finished) the job already: it then replaced
        # the summary we read, and its newer state must not be put back to "queued".
        seen = media.job["id"] if media.job else None
        updated = await self.repository.update(media.id, changes, job_is=seen)
        self.on_job_queued()
        return updated or await self.get_visible_by_id(media.id)

    def _processing_request(
        self, media: MediaRecord, request: ProcessRequest
    ) -> tuple[list[str], Doc]:
        operations = request.operations
        allowed = applicable_operations(media.media_type, media.content_type)
        for operation in operations:
            if operation not in allowed:
                raise BadRequest(f"Operation '{operation}' does not apply to this media")
        resize = request.options.resize
        checked: Doc = {}
        if "resize" in operations or resize is not UNSET:
            # The spec's own example sends the box with ["thumbnail", "optimize"]: there it
            # is the box the optimized copy fits inside.
            if "resize" not in operations and "optimize" not in operations:
                raise BadRequest("options.resize is for the resize and optimize operations")
            if resize is UNSET:
                raise BadRequest('options.resize must be {"width": <int>, "height": <int>}')
            checked["resize"] = {"width": resize.width, "height": resize.height}
        return list(dict.fromkeys(operations)), checked

    # ---- bulk

    async def bulk_delete(
        self, principal: Principal, request: BulkDeleteRequest
    ) -> BulkDeleteResult:
        """Delete several media; report how many went and which failed and why."""
        deleted, failed = 0, []
        for media_id in dict.fromkeys(request.media_ids):
            try:
                await self._delete(await self.get_visible(principal, media_id))
                deleted += 1
            except NotFound as exc:
                failed.append(BulkFailure(id=media_id[:64], error=exc.message))
        return BulkDeleteResult(deleted=deleted, failed=failed)

    async def bulk_update(
        self, principal: Principal, request: BulkUpdateRequest
    ) -> BulkUpdateResult:
        """Apply the same metadata to several media (not is_primary: one per entity)."""
        changes = given(request.updates)
        updated, failed = 0, []
        for media_id in dict.fromkeys(request.media_ids):
            try:
                await self._apply(await self.get_visible(principal, media_id), dict(changes))
                updated += 1
            except NotFound as exc:
                failed.append(BulkFailure(id=media_id[:64], error=exc.message))
        return BulkUpdateResult(updated=updated, failed=failed)

    # ---- output

    def present(self, media: MediaRecord, base_url: str) -> Media:
        """The API form of a media record."""
        return present_media(media, self.blobs, base_url)


def _batch_result(
    created: list[BatchCreated],
    existing: list[BatchCreated],
    errors: list[BatchError],
    *,
    dedupe: bool,
) -> BatchResult:
    """The answer of a batch; `existing` and its count only when dedupe was asked for."""
    successful = len(created) + len(existing)
    summary = BatchSummary(
        total=successful + len(errors), successful=successful, failed=len(errors)
    )
    if not dedupe:
        return BatchResult(created=created, errors=errors, summary=summary)
    summary.existing = len(existing)
    return BatchResult(created=created, errors=errors, summary=summary, existing=existing)


def _id_of(media: MediaRecord | None) -> str | None:
    return media.id if media is not None else None


def _gone() -> MediaRecord:
    raise NotFound("Media not found")


def _filter(value: Any) -> str | None:
    """A filter's value as the query holds it: text, or None when it was not given."""
    return None if value is UNSET else str(value)
