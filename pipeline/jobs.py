"""Processing jobs as records: what each media type needs, and the job documents.

Jobs live in MongoDB (the ``jobs`` collection) so they survive a crash of the process that
queued them; a dispatcher claims them with a lease and runs them in a process pool.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, get_args

from mediasvc.records import JobRecord, MediaRecord

OperationName = Literal["thumbnail", "optimize", "resize"]
OPERATIONS: tuple[OperationName, ...] = get_args(OperationName)
HEAVY, CHEAP = "heavy", "cheap"
LANES = (HEAVY, CHEAP)
# Still raster images: their cost is bounded by the pixel limit checked from the header.
_CHEAP_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "heic", "heif", "avif"})


def default_operations(
    media_type: str, content_type: str, image_ops: tuple[str, ...], video_ops: tuple[str, ...]
) -> list[str]:
    """What an upload of this type gets without being asked; empty: nothing applies."""
    if media_type == "image":
        return list(image_ops)
    if media_type == "video":
        return list(video_ops)
    if media_type == "audio":
        return ["thumbnail"]  # a waveform image
    if content_type == "application/pdf":
        return ["thumbnail"]  # a first-page preview
    return []


def applicable_operations(media_type: str, content_type: str) -> tuple[str, ...]:
    """Every operation that can be asked for on this type of media."""
    if media_type in ("image", "video"):
        return OPERATIONS
    if media_type == "audio" or content_type == "application/pdf":
        return ("thumbnail",)
    return ()


def job_lane(media: MediaRecord) -> str:
    """The queue lane of a media's jobs, an estimate of their cost from the type alone:
    still images are cheap; video, audio, PDF, SVG and possibly animated images are heavy."""
    if media.media_type == "image" and media.extension in _CHEAP_EXTENSIONS:
        return CHEAP
    return HEAVY


def new_job(
    media_id: str,
    operations: list[str],
    now: int,
    options: dict[str, Any] | None = None,
    *,
    lane: str = HEAVY,
) -> JobRecord:
    """A queued job for `media_id`, in the `lane` its cost puts it in, holding the media's
    active slot (see JobRecord)."""
    return JobRecord(
        id=str(uuid.uuid4()),
        media_id=media_id,
        operations=operations,
        options=options or {},
        lane=lane,
        created_at=now,
        updated_at=now,
        active_slot=media_id,
    )
