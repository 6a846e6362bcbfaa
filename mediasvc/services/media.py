"""Media records: create from an upload, list, read, change, delete, choose the primary."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from mediasvc.auth import Principal
from mediasvc.errors import BadRequest, Conflict, Forbidden, MediaError, NotFound, Unavailable
from mediasvc.filenames import clean_filename
from mediasvc.listing import Cursor, MediaFilters, MediaPage, MediaQuery
from mediasvc.media_types import MEDIA_TYPES, FileKind
from mediasvc.pipeline.jobs import (
    OPERATIONS,
    applicable_operations,
    default_operations,
    job_lane,
    new_job,
)
from mediasvc.records import Doc, MediaRecord, MediaStatus, now_ms
from mediasvc.repository import JobActive, MediaRepository, PrimaryTaken
from mediasvc.services.deletions import FileDeletions
from mediasvc.services.presenter import present_media
from mediasvc.settings import Settings
from mediasvc.storage import BlobStore
from mediasvc.upload import ReceivedFile
from mediasvc.validation import (
    check_field,
    json_int,
    maybe_uuid,
    metadata_changes,
    parse_entity_type,
    parse_form_bool,
    parse_form_int,
    parse_uuid,
)

log = logging.getLogger(__name__)

STATUSES = tuple(status.value for status in MediaStatus)
UPLOAD_FIELDS = frozenset(
    {"entity_type", "entity_id", "title", "description", "alt_text", "is_primary", "display_order"}
)
NO_PERMISSION = "No permission to upload media for this entity"
_PRIMARY_RETRIES = 10


class MediaService:
    """Everything the API does with media records and their files."""

    def __init__(
        self,
        repository: MediaRepository,
        blobs: BlobStore,
        settings: Settings,
        clock: Callable[[], int] = now_ms,
        on_job_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.repository = repository
        self.blobs = blobs
        self.settings = settings
        self.clock = clock
        self.on_job_queued = on_job_queued
        self.deletions = FileDeletions(repository, blobs, clock)

    # ---- uploads

    def check_upload_target(self, principal: Principal, fields: Mapping[str, str]) -> None:
        """Refuse early (before file bytes are read) when the entity is already known to be bad."""
        if "entity_type" in fields and "entity_id" in fields:
            self.entity_for_upload(principal, fields)

    async def create_from_upload(
        self, principal: Principal, fields: Mapping[str, str], received: ReceivedFile
    ) -> MediaRecord:
        """Store a spooled upload durably, record it, and queue its processing."""
        entity = self.entity_for_upload(principal, fields)
        metadata = self._upload_metadata(fields)
        is_primary = metadata.pop("is_primary", False)
        media = self.new_media(principal, entity, received.kind, received.raw_filename, metadata)
        media.file_size, media.sha256 = received.size, received.sha256
        operations = self.operations_for(media)
        media.status = MediaStatus.PROCESSING if operations else MediaStatus.READY
        await self.blobs.put_file(media.storage_key, received.spool.path, media.content_type)
        await self._record(media, operations)
        if is_primary:
            try:
                media = await self._make_primary(media, {})
            except BaseException:  # a refused upload leaves nothing behind
                await asyncio.shield(self._undo_create(media))
                raise
        return media

    async def create_batch(
        self,
        principal: Principal,
        fields: Mapping[str, str],
        files: list[ReceivedFile],
        rejected: list[dict[str, str]],
    ) -> Doc:
        """Store each file of a batch on its own; bad files are reported, not fatal."""
        if set(fields) - {"entity_type", "entity_id"}:
            unknown = sorted(set(fields) - {"entity_type", "entity_id"})[0]
            raise BadRequest(f"Unknown field '{unknown[:64]}'")
        self.entity_for_upload(principal, fields)
        if not files and not rejected:
            raise BadRequest("No file was submitted in the 'files' field")
        created, errors = [], list(rejected)
        trouble: MediaError | None = None  # the service's own (storage down, disk full)
        for received in files:
            try:
                media = await self.create_from_upload(principal, fields, received)
            except MediaError as exc:
                errors.append({"filename": received.raw_filename[:255], "error": exc.message})
                trouble = exc if exc.status >= 500 else trouble
                continue
            created.append({"id": media.id, "filename": media.filename, "status": media.status})
        if trouble is not None and not created:
            raise trouble  # not the files' fault: the batch gets the 503 or 507 itself
        total = len(created) + len(errors)
        return {
            "created": created,
            "errors": errors,
            "summary": {"total": total, "successful": len(created), "failed": len(errors)},
        }

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
        # fails, the file is removed again and the client sees the error.
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
            await self.repository.delete(media.id)
        except Exception:  # the database may be the thing that failed
            log.exception("could not remove the record of failed upload %s", media.id)
        await self.deletions.delete([media.storage_key])

    def entity_for_upload(self, principal: Principal, fields: Mapping[str, Any]) -> tuple[str, str]:
        """The validated (entity_type, entity_id) of an upload; 403 without permission."""
        if "entity_type" not in fields:
            raise BadRequest("entity_type is required")
        if "entity_id" not in fields:
            raise BadRequest("entity_id is required")
        entity_type = parse_entity_type(fields["entity_type"])
        entity_id = parse_uuid(fields["entity_id"], "entity_id")
        if not principal.may_act_on(entity_type, entity_id):
            raise Forbidden(NO_PERMISSION)
        return entity_type, entity_id

    def upload_fields(self, fields: Mapping[str, str]) -> dict[str, Any]:
        """The optional fields of an upload (title, ..., is_primary) as form strings, checked."""
        return self._upload_metadata(fields)

    def _upload_metadata(self, fields: Mapping[str, str]) -> dict[str, Any]:
        unknown = sorted(set(fields) - UPLOAD_FIELDS)
        if unknown:
            raise BadRequest(f"Unknown field '{unknown[0][:64]}'")
        metadata: dict[str, Any] = {}
        for name in ("title", "description", "alt_text"):
            if name in fields:
                metadata[name] = check_field(name, fields[name], self.settings)
        if "display_order" in fields:
            order = parse_form_int(fields["display_order"], "display_order")
            metadata["display_order"] = check_field("display_order", order, self.settings)
        if "is_primary" in fields:
            metadata["is_primary"] = parse_form_bool(fields["is_primary"], "is_primary")
        return metadata

    # ---- reading

    def parse_list_query(self, principal: Principal, params: Mapping[str, str]) -> MediaQuery:
        """Validate list query parameters; malformed values are a 400, large limits are clamped."""
        filters = MediaFilters(
            entity_type=_optional(params, "entity_type", parse_entity_type),
            entity_id=_optional(params, "entity_id", lambda v: parse_uuid(v, "entity_id")),
            media_type=_optional(
                params, "media_type", lambda v: _one_of(v, MEDIA_TYPES, "media_type")
            ),
            status=_optional(params, "status", lambda v: _one_of(v, STATUSES, "status")),
        )
        search = params.get("search", "").strip()
        if len(search) > self.settings.max_search_length:
            raise BadRequest(f"search must be at most {self.settings.max_search_length} characters")
        if any(unicodedata.category(ch) == "Cc" for ch in search):
            raise BadRequest("search must not contain control characters")
        limit = _query_int(params.get("limit"), "limit", self.settings.default_page_size)
        if limit < 1:
            raise BadRequest("limit must be a positive integer")
        offset = _query_int(params.get("offset"), "offset", 0)
        if offset < 0:
            raise BadRequest("offset must not be negative")
        cursor = Cursor.decode(params["cursor"]) if params.get("cursor") else None
        return MediaQuery(
            filters,
            search,
            principal.visibility(),
            min(limit, self.settings.max_page_size),
            offset,
            cursor,
        )

    async def list_media(self, query: MediaQuery) -> MediaPage:
        """A page of the media the caller may see, in display order, newest first."""
        return await self.repository.list_media(query)

    async def get_visible(self, principal: Principal, media_id: str) -> MediaRecord:
        """One media the caller may see; otherwise 404, whether or not it exists."""
        canonical = maybe_uuid(media_id)
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

    async def update(
        self, principal: Principal, media_id: str, body: Mapping[str, Any]
    ) -> MediaRecord:
        """PATCH: change editable metadata; is_primary true/false moves the primary mark."""
        media = await self.get_visible(principal, media_id)
        changes = metadata_changes(body, self.settings)
        return await self._apply(media, changes)

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
        deleted = await self.repository.delete(media.id)
        if deleted is None:
            raise NotFound("Media not found")
        # A presigned URL still valid can put the original back: delete it again after that.
        grace = self.settings.pending_upload_grace * 1000
        url_dead = (deleted.upload_expires_at or 0) + grace
        not_before = url_dead if url_dead > self.clock() else 0
        await self.deletions.delete(deleted.stored_keys(), deleted.id, not_before)

    # ---- processing

    async def process(
        self, principal: Principal, media_id: str, body: Mapping[str, Any]
    ) -> MediaRecord:
        """Queue processing operations (this also retries a failed media)."""
        media = await self.get_visible(principal, media_id)
        operations, options = self._processing_request(media, body)
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
        self, media: MediaRecord, body: Mapping[str, Any]
    ) -> tuple[list[str], Doc]:
        _only_keys(body, {"operations", "options"})
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations:
            raise BadRequest(f"operations must be a non-empty list of: {', '.join(OPERATIONS)}")
        allowed = applicable_operations(media.media_type, media.content_type)
        for operation in operations:
            if operation not in OPERATIONS:
                raise BadRequest(f"Unknown operation '{str(operation)[:32]}'")
            if operation not in allowed:
                raise BadRequest(f"Operation '{operation}' does not apply to this media")
        options = body.get("options", {})
        if not isinstance(options, dict):
            raise BadRequest("options must be an object")
        _only_keys(options, {"resize"})
        checked: Doc = {}
        if "resize" in operations or "resize" in options:
            # The spec's own example sends the box with ["thumbnail", "optimize"]: there it
            # is the box the optimized copy fits inside.
            if "resize" not in operations and "optimize" not in operations:
                raise BadRequest("options.resize is for the resize and optimize operations")
            checked["resize"] = self._resize_option(options.get("resize"))
        return list(dict.fromkeys(operations)), checked

    def _resize_option(self, value: Any) -> Doc:
        if not isinstance(value, dict) or set(value) != {"width", "height"}:
            raise BadRequest('options.resize must be {"width": <int>, "height": <int>}')
        limit = self.settings.max_resize_dimension
        box = {}
        for name in ("width", "height"):
            size = json_int(value[name])
            if size is None or not 1 <= size <= limit:
                raise BadRequest(f"options.resize.{name} must be an integer from 1 to {limit}")
            box[name] = size
        return box

    # ---- bulk

    def _bulk_ids(self, body: Mapping[str, Any]) -> list[str]:
        ids = body.get("media_ids")
        if not isinstance(ids, list) or not ids:
            raise BadRequest("media_ids must be a non-empty list of UUIDs")
        if len(ids) > self.settings.max_bulk_ids:
            raise BadRequest(f"media_ids may name at most {self.settings.max_bulk_ids} media")
        if not all(isinstance(i, str) for i in ids):
            raise BadRequest("media_ids must be a non-empty list of UUIDs")
        return list(dict.fromkeys(ids))

    async def bulk_delete(self, principal: Principal, body: Mapping[str, Any]) -> Doc:
        """Delete several media; report how many went and which failed and why."""
        _only_keys(body, {"media_ids"})
        deleted, failed = 0, []
        for media_id in self._bulk_ids(body):
            try:
                await self._delete(await self.get_visible(principal, media_id))
                deleted += 1
            except NotFound as exc:
                failed.append({"id": media_id[:64], "error": exc.message})
        return {"deleted": deleted, "failed": failed}

    async def bulk_update(self, principal: Principal, body: Mapping[str, Any]) -> Doc:
        """Apply the same metadata to several media (not is_primary: one per entity)."""
        _only_keys(body, {"media_ids", "updates"})
        ids = self._bulk_ids(body)
        updates = body.get("updates")
        if not isinstance(updates, dict) or not updates:
            raise BadRequest("updates must be a non-empty object")
        if "is_primary" in updates:
            raise BadRequest("is_primary cannot be bulk-updated; use set_primary")
        changes = metadata_changes(updates, self.settings)
        updated, failed = 0, []
        for media_id in ids:
            try:
                await self._apply(await self.get_visible(principal, media_id), dict(changes))
                updated += 1
            except NotFound as exc:
                failed.append({"id": media_id[:64], "error": exc.message})
        return {"updated": updated, "failed": failed}

    # ---- output

    def present(self, media: MediaRecord, base_url: str) -> Doc:
        """The API form of a media record."""
        return present_media(media, self.blobs, base_url)


def _gone() -> MediaRecord:
    raise NotFound("Media not found")


def _one_of(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise BadRequest(f"{name} must be one of: {', '.join(allowed)}")
    return value


def _query_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]+(\.0*)?", raw):  # `20.0` too: an integer to JSON Schema
        raise BadRequest(f"{name} must be an integer")
    digits = raw.split(".", 1)[0]
    if len(digits) > 12:
        raise BadRequest(f"{name} is out of range")
    return int(digits)


def _optional(params: Mapping[str, str], name: str, parse: Callable[[str], str]) -> str | None:
    return parse(params[name]) if name in params else None


def _only_keys(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"Unknown field '{str(unknown[0])[:64]}'")
