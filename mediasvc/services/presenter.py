"""The API form of media records: every field of the spec's list example, typed as there."""

from __future__ import annotations

from datetime import UTC, datetime

from mediasvc.records import Doc, MediaRecord
from mediasvc.storage import BlobStore


def present_media(media: MediaRecord, blobs: BlobStore, base_url: str) -> Doc:
    """A media record as the API shows it, with URLs to its file and derived files."""
    return {
        "id": media.id,
        "url": blobs.url(media.storage_key, base_url),
        "thumbnail_url": blobs.url(media.thumbnail_key, base_url) if media.thumbnail_key else None,
        "filename": media.filename,
        "file_size": media.file_size,
        "content_type": media.content_type,
        "media_type": media.media_type,
        "entity_type": media.entity_type,
        "entity_id": media.entity_id,
        "title": media.title,
        "description": media.description,
        "alt_text": media.alt_text,
        "status": media.status.value,
        "error": media.error,
        "width": media.width,
        "height": media.height,
        "is_primary": media.is_primary,
        "display_order": media.display_order,
        "view_count": media.view_count,
        "download_count": media.download_count,
        "duration": media.duration,
        "bitrate": media.bitrate,
        "sha256": media.sha256,
        "variants": [
            {
                **{k: v for k, v in variant.items() if k != "key"},
                "url": blobs.url(variant["key"], base_url),
            }
            for variant in media.variants
        ],
        "job": present_job(media.job),
        "created_at": iso(media.created_at),
        "updated_at": iso(media.updated_at),
        **({} if media.upload_offset is None else {"upload_offset": media.upload_offset}),
    }


def iso(millis: int) -> str:
    """Milliseconds since the epoch as `2024-01-15T10:30:00.123Z`."""
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def present_job(job: Doc | None) -> Doc | None:
    if job is None:
        return None
    times = ("created_at", "started_at", "finished_at")
    shown = {k: (iso(v) if k in times and v else v) for k, v in job.items()}
    started, finished = job.get("started_at"), job.get("finished_at")
    shown["duration_ms"] = finished - started if started and finished else None
    return shown
