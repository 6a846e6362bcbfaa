"""Presigned uploads: the client PUTs the bytes straight to storage, then confirms.

The service records a `pending` media with a server-made key and hands out a signed PUT
URL; `confirm` checks that the object really exists, has the declared size and sniffs as a
type allowed for its extension, and only then moves the media on to processing. Uploads
that are never confirmed are swept once their URL has expired.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial

from mediasvc.auth import Principal
from mediasvc.errors import BadRequest, Conflict, Forbidden
from mediasvc.media_types import extension_of, kind_for_extension
from mediasvc.models.base import TEXTS, given
from mediasvc.models.uploads import PresignedUpload, PresignedUploadRequest
from mediasvc.records import MediaRecord, MediaStatus, now_ms
from mediasvc.services.arrival import accept, content_problem, reject
from mediasvc.services.media import MediaService
from mediasvc.upload import size_error
from mediasvc.webhooks.events import EventType

log = logging.getLogger(__name__)
SWEEP_BATCH = 100


class PresignedUploads:
    """Create, confirm and sweep presigned uploads."""

    def __init__(self, media: MediaService) -> None:
        self.media = media
        self.settings = media.settings
        self.blobs = media.blobs
        self.repository = media.repository

    async def create(
        self, principal: Principal, request: PresignedUploadRequest, base_url: str
    ) -> PresignedUpload:
        """Check what the extension decides, then record a pending media and sign its PUT URL."""
        extension = extension_of(request.filename)
        kind = kind_for_extension(extension)
        if kind is None:
            raise BadRequest(f"File extension '{extension[:32]}' is not allowed")
        content_type = request.content_type.lower()
        if content_type not in kind.sniffed:
            raise BadRequest(
                f"Content type '{content_type[:64]}' does not match the extension '{extension}'"
            )
        entity = self.media.entity_for_upload(principal, request)
        size, limit = request.file_size, self.settings.size_limit(kind.media_type)
        if size > limit:
            raise size_error(kind.media_type, limit)
        metadata = given(request, TEXTS)
        media = self.media.new_media(principal, entity, kind, request.filename, metadata)
        ttl = self.settings.presigned_upload_ttl
        upload = self.blobs.presign_upload(media.storage_key, content_type, size, ttl, base_url)
        media.file_size, media.upload_expires_at = size, upload.expires_at * 1000
        await self.repository.insert(media)
        expires_at = datetime.fromtimestamp(upload.expires_at, UTC)
        return PresignedUpload(
            upload_url=upload.url,
            upload_headers=upload.headers,
            media_id=media.id,
            storage_key=media.storage_key,
            expires_at=expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    async def confirm(self, principal: Principal, media_id: str) -> MediaRecord:
        """Check the uploaded object and move the media on; confirming again changes nothing."""
        media = await self.media.get_visible(principal, media_id)
        if media.uploaded_by != principal.sub and not principal.is_admin:
            raise Forbidden("Only the uploader may confirm this upload")
        if media.status is not MediaStatus.PENDING:
            if media.status is MediaStatus.FAILED and media.upload_rejected:
                raise BadRequest(media.error or "The upload was rejected")
            return media
        size = await self.blobs.size_of(media.storage_key)
        if size is None:
            raise Conflict("upload not found")
        problem = await self._problem_with(media, size)
        if problem is not None:
            await self._reject(media, problem)
        return await self._accept(media)

    async def _problem_with(self, media: MediaRecord, size: int) -> str | None:
        read_head = partial(self.blobs.read_head, media.storage_key)
        return await content_problem(media, size, read_head, self.settings.sniff_max_tag_size)

    async def _reject(self, media: MediaRecord, reason: str) -> None:
        await reject(self.media, media, reason)
        raise BadRequest(reason)

    async def _accept(self, media: MediaRecord) -> MediaRecord:
        return await accept(self.media, media, {})

    async def sweep(self) -> dict[str, int]:
        """Remove pending uploads whose URL expired (record and any object); abort stale parts."""
        cutoff = now_ms() - self.settings.pending_upload_grace * 1000
        removed = 0
        while True:
            expired = await self.repository.expired_pending(cutoff, SWEEP_BATCH)
            for media in expired:
                if await self.media.remove(media, EventType.UPLOAD_EXPIRED) is not None:
                    await self.media.deletions.delete([media.storage_key])
                    removed += 1
            if len(expired) < SWEEP_BATCH:
                break
        aborted = await self.blobs.sweep_incomplete(self.settings.incomplete_multipart_max_age)
        if removed or aborted:
            log.info(
                "sweep removed %d expired uploads, aborted %d partial uploads", removed, aborted
            )
        return {"expired_uploads": removed, "aborted_multipart_uploads": aborted}
