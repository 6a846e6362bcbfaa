"""The API form of media records: the `Media` model, with URLs to its file and derived files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from msgspec import UNSET

from mediasvc.media_types import MediaType
from mediasvc.models.media import Job, Media, Placeholder, ProcessOptions, ResizeBox, Variant
from mediasvc.records import Doc, MediaRecord
from mediasvc.storage import BlobStore


def present_media(media: MediaRecord, blobs: BlobStore, base_url: str) -> Media:
    """A media record as the API shows it."""
    return Media(
        id=media.id,
        url=blobs.url(media.storage_key, base_url),
        thumbnail_url=blobs.url(media.thumbnail_key, base_url) if media.thumbnail_key else None,
        filename=media.filename,
        file_size=media.file_size,
        content_type=media.content_type,
        media_type=cast(MediaType, media.media_type),
        entity_type=media.entity_type,
        entity_id=media.entity_id,
        title=media.title,
        description=media.description,
        alt_text=media.alt_text,
        status=media.status,
        error=media.error,
        width=media.width,
        height=media.height,
        is_primary=media.is_primary,
        display_order=media.display_order,
        view_count=media.view_count,
        download_count=media.download_count,
        duration=media.duration,
        bitrate=media.bitrate,
        sha256=media.sha256,
        variants=[present_variant(variant, blobs, base_url) for variant in media.variants],
        placeholder=Placeholder(**media.placeholder) if media.placeholder else None,
        job=present_job(media.job),
        created_at=iso(media.created_at),
        updated_at=iso(media.updated_at),
        upload_offset=UNSET if media.upload_offset is None else media.upload_offset,
    )


def present_variant(variant: Doc, blobs: BlobStore, base_url: str) -> Variant:
    """A derived file as stored on its media, with its URL instead of its key."""
    return Variant(
        name=variant["name"],
        url=blobs.url(variant["key"], base_url),
        content_type=variant["content_type"],
        width=variant.get("width"),
        height=variant.get("height"),
        size=variant["size"],
    )


def iso(millis: int) -> str:
    """Milliseconds since the epoch as `2024-01-15T10:30:00.123Z`."""
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def present_job(job: Doc | None) -> Job | None:
    """The summary of a media's latest job, with its times as timestamps."""
    if job is None:
        return None
    started, finished = job.get("started_at"), job.get("finished_at")
    resize = (job.get("options") or {}).get("resize")
    return Job(
        id=job["id"],
        operations=job["operations"],
        options=ProcessOptions(resize=ResizeBox(**resize) if resize else UNSET),
        state=job["state"],
        attempts=job["attempts"],
        error=job.get("error"),
        created_at=iso(job["created_at"]),
        started_at=iso(started) if started else None,
        finished_at=iso(finished) if finished else None,
        duration_ms=finished - started if started and finished else None,
    )
