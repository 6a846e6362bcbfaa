"""Jobs a crash kept out of the queue: put back by the sweep, so no media waits for good.

A media and its first job are two writes: the record (already `processing`, showing its
job) and then the job. An upload that fails in between removes its record again, and an
arrival (presigned, resumable) moves it back to `pending`; but a process killed between the
two writes leaves a `processing` media whose job does not exist, which no dispatcher would
ever claim. The sweep queues that job as the media shows it (same id, operations and
options) once the media has not changed for `lost_job_grace` seconds. The bytes are stored
and checked by then; a client that never saw its answer and retried has two media, as after
any answer lost on the way (an Idempotency-Key avoids that), but none is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mediasvc.pipeline.jobs import job_lane
from mediasvc.records import JobRecord, JobState, MediaRecord, now_ms
from mediasvc.repository import JobActive, MediaRepository

log = logging.getLogger(__name__)
BATCH = 100


class LostJobs:
    """Finds processing media whose job is missing and queues it again."""

    def __init__(
        self,
        repository: MediaRepository,
        grace_seconds: int,
        on_job_queued: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.repository = repository
        self.grace_ms = grace_seconds * 1000
        self.on_job_queued = on_job_queued
        self.clock = clock

    async def requeue(self) -> dict[str, int]:
        """One pass over the processing media; how many jobs it queued again."""
        before = self.clock() - self.grace_ms
        after_key, requeued = "", 0
        while True:
            stalled = await self.repository.stalled_processing(before, after_key, BATCH)
            requeued += await self._requeue_missing(stalled)
            if len(stalled) < BATCH:
                break
            after_key = stalled[-1].sort_key
        if requeued:
            log.warning("queued %d jobs again that a crash had kept out of the queue", requeued)
            self.on_job_queued()
        return {"requeued_jobs": requeued}

    async def _requeue_missing(self, media: list[MediaRecord]) -> int:
        shown = {
            record.job["id"]: record
            for record in media
            if record.job and record.job.get("state") == JobState.QUEUED.value
        }
        present = await self.repository.jobs_present(list(shown))
        requeued = 0
        for job_id, record in shown.items():
            if job_id in present:
                continue
            try:
                await self.repository.insert_job(_job_shown_on(record))
            except JobActive:  # queued meanwhile, or another process's sweep was first
                continue
            requeued += 1
        return requeued


def _job_shown_on(media: MediaRecord) -> JobRecord:
    """The job the media shows, as it was queued; its media's active slot again."""
    job = media.job or {}
    now = now_ms()
    return JobRecord(
        id=job["id"],
        media_id=media.id,
        operations=list(job.get("operations") or []),
        options=dict(job.get("options") or {}),
        lane=job_lane(media),
        created_at=int(job.get("created_at") or now),
        updated_at=now,
        active_slot=media.id,
    )
