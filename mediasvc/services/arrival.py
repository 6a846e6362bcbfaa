"""What happens when the bytes of an upload that went around the multipart form (a presigned
PUT, a resumable upload) have all arrived: the same checks as a direct upload, then processing.

The content must have the recorded size and sniff as a type its extension allows; a file
that fails is removed and its media fails with the reason. One that passes moves from
`pending` to `processing` (or `ready`) with its first job, exactly once under races.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mediasvc.media_types import kind_for_extension, sniff_agrees
from mediasvc.pipeline.jobs import job_lane, new_job
from mediasvc.records import Doc, MediaRecord, MediaStatus, now_ms
from mediasvc.services.media import MediaService
from mediasvc.sniffing import read_sniff_head
from mediasvc.upload import sniff
from mediasvc.webhooks.events import Event, EventType, created_events, new_event


async def content_problem(
    media: MediaRecord,
    size: int,
    read_head: Callable[[int], Awaitable[bytes]],
    max_tag_skip: int,
) -> str | None:
    """Why the arrived content may not be this media's file, or None when it may."""
    if size != media.file_size:
        return f"Uploaded size {size} does not match the declared size {media.file_size}"
    kind = kind_for_extension(media.extension)
    assert kind is not None
    head = await read_sniff_head(
        read_head, skip_tags=kind.media_type == "audio", max_skip=max_tag_skip
    )
    sniffed = await asyncio.get_running_loop().run_in_executor(None, sniff, head)
    if not sniff_agrees(kind, sniffed, head):
        return f"File content ({sniffed}) does not match its extension '{kind.extension}'"
    return None


async def reject(media: MediaService, record: MediaRecord, reason: str) -> None:
    """The media fails with `reason`; its stored original (if any) is deleted first."""
    await media.deletions.delete([record.storage_key])
    changes = {
        "status": MediaStatus.FAILED,
        "error": reason,
        "upload_rejected": True,
        "updated_at": now_ms(),
    }
    failed = [new_event(EventType.MEDIA_FAILED)]
    await media.repository.transition(record.id, MediaStatus.PENDING, changes, failed)


async def accept(media: MediaService, record: MediaRecord, changes: Doc) -> MediaRecord:
    """Move a pending media on to processing with its first job (or straight to ready);
    `changes` are stored with the move, and so are its events (media.created, and
    media.ready if it needs no processing). The loser of a race gets what the winner made."""
    operations = media.operations_for(record)
    now = now_ms()
    job = new_job(record.id, operations, now, lane=job_lane(record)) if operations else None
    events = created_events(job is None, now)
    moved = await media.repository.transition(
        record.id,
        MediaStatus.PENDING,
        {
            **changes,
            "status": MediaStatus.PROCESSING if job else MediaStatus.READY,
            "job": job.summary() if job else None,
            "updated_at": now,
        },
        events,
    )
    if moved is None:
        return await media.get_visible_by_id(record.id)
    if job is not None:
        try:
            await media.repository.insert_job(job)
        except BaseException:
            await asyncio.shield(_back_to_pending(media, record.id, events))
            raise
        media.on_job_queued()
    return moved


async def _back_to_pending(media: MediaService, media_id: str, events: list[Event]) -> None:
    """Undo a move whose job could not be queued: pending again, and its events taken back
    (those the relay has not taken yet)."""
    await media.repository.update(media_id, {"status": MediaStatus.PENDING, "job": None})
    await media.repository.remove_events({media_id: [event.encode() for event in events]})
