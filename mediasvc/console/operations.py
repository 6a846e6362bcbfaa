"""What the console's operations page shows admins: the job queue, busy workers, health.

Read-only, over the same collections the dispatchers use: jobs by state (each with the
media it is for), the running ones grouped by the process that holds them, and the answers
of the database and the storage. A retry is the public API's `process` of the media.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
from pymongo import DESCENDING

from mediasvc.embedded_db import EmbeddedMongo
from mediasvc.readiness import dependency_checks
from mediasvc.records import Doc, JobRecord, JobState, MediaRecord
from mediasvc.repository import MediaRepository, database_errors, eq
from mediasvc.services.presenter import iso, present_job
from mediasvc.settings import Settings
from mediasvc.storage import BlobStore

log = logging.getLogger(__name__)
SHOWN_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.FAILED)
JOBS_SHOWN = 50
"""Jobs listed per state, newest first (the counts are of all of them)."""
_MEDIA_FIELDS = ("filename", "media_type", "status", "entity_type", "entity_id")


@dataclass
class OperationsOverview:
    """A snapshot of the pipeline and its dependencies, as the operations page shows it."""

    repository: MediaRepository
    blobs: BlobStore
    settings: Settings
    embedded_db: EmbeddedMongo | None = None

    async def snapshot(self, base_url: str) -> Doc:
        """Health, counts, the newest jobs of each state with their media, busy workers."""
        health = await self.health()
        if health["database"] != "ok":  # nothing else can be read: say so, quickly
            return {"health": health, "jobs": None, "workers": None}
        counts = await self.repository.count_jobs(tuple(s.value for s in SHOWN_STATES))
        listed = {state: await self._newest(state) for state in SHOWN_STATES}
        media = await self._media_of([job for jobs in listed.values() for job in jobs])
        return {
            "health": health,
            "jobs": {
                "counts": counts,
                **{
                    state.value: [self._job(job, media.get(job.media_id), base_url) for job in jobs]
                    for state, jobs in listed.items()
                },
            },
            "workers": self._workers(listed[JobState.RUNNING]),
        }

    async def health(self) -> dict[str, str]:
        """`ok`, `timeout`, `unavailable` (or `restarting`, an embedded database) for each."""
        checks = await dependency_checks(self.repository, self.blobs, self.embedded_db)
        shown: dict[str, str] = msgspec.to_builtins(checks)
        return shown

    async def _newest(self, state: JobState) -> list[JobRecord]:
        """The newest jobs in `state`: one indexed query per `suspect` value (the claim
        index leads with state and suspect), merged by age."""
        jobs: list[JobRecord] = []
        collection: Any = self.repository.jobs_collection
        with database_errors():
            for suspect in (False, True):
                query = {"state": eq(state.value), "suspect": eq(suspect)}
                cursor = collection.find(query).sort("created_at", DESCENDING).limit(JOBS_SHOWN)
                jobs += [JobRecord.from_doc(doc) for doc in await cursor.to_list()]
        jobs.sort(key=lambda job: job.created_at, reverse=True)
        return jobs[:JOBS_SHOWN]

    async def _media_of(self, jobs: list[JobRecord]) -> dict[str, MediaRecord]:
        ids = list(dict.fromkeys(job.media_id for job in jobs))
        found = await asyncio.gather(*(self.repository.get(media_id) for media_id in ids))
        return {media.id: media for media in found if media is not None}

    def _job(self, job: JobRecord, media: MediaRecord | None, base_url: str) -> Doc:
        """A job as the page lists it; `current` says whether its media still shows it (a
        failed job whose media was processed again since is history)."""
        shown: Doc = msgspec.to_builtins(present_job(job.summary())) or {}
        shown.update(
            media_id=job.media_id,
            lane=job.lane,
            owner=job.owner,
            updated_at=iso(job.updated_at),
            lease_expires_at=iso(job.lease_expires_at) if job.lease_expires_at else None,
            current=bool(media and media.job and media.job.get("id") == job.id),
            media=self._media(media, base_url),
        )
        return shown

    def _media(self, media: MediaRecord | None, base_url: str) -> Doc | None:
        if media is None:
            return None  # deleted since
        shown: Doc = {name: getattr(media, name) for name in _MEDIA_FIELDS}
        shown["status"] = media.status.value
        thumbnail = media.thumbnail_key
        shown["thumbnail_url"] = self.blobs.url(thumbnail, base_url) if thumbnail else None
        return shown

    def _workers(self, running: list[JobRecord]) -> Doc:
        """Busy workers: the running jobs, by the process (host:pid) that holds them."""
        by_owner = Counter(job.owner or "?" for job in running)
        return {
            "per_process": self.settings.workers,
            "busy": len(running),
            "processes": [{"owner": owner, "busy": busy} for owner, busy in by_owner.items()],
        }
