"""The durable job queue: claims with a lease, heartbeats, outcomes.

Claims are single-document atomic updates, so any number of processes on any number of
machines can share one queue. Queries stay simple (no `$or`), which every MongoDB-wire
server evaluates the same way.
"""

from __future__ import annotations

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from mediasvc.records import Doc, JobRecord, JobState, now_ms
from mediasvc.repository import database_errors, eq

_OLDEST_FIRST = [("created_at", ASCENDING)]


class JobQueue:
    """Claims and settles jobs on behalf of one owner (a process)."""

    def __init__(self, jobs: AsyncCollection[Doc], owner: str) -> None:
        self._jobs = jobs
        self.owner = owner

    async def claim(
        self,
        lease_ms: int,
        *,
        suspects: bool = False,
        expired: bool = True,
        lane: str | None = None,
    ) -> JobRecord | None:
        """The oldest queued job (or a suspect one), of `lane` if given; else, if `expired`,
        one whose lease ran out (of any lane)."""
        queued: Doc = {"state": eq(JobState.QUEUED.value), "suspect": eq(suspects)}
        if lane is not None:
            queued["lane"] = eq(lane)
        job = await self._take(queued, lease_ms)
        if job is None and expired and not suspects:
            lapsed = {"state": eq(JobState.RUNNING.value), "lease_expires_at": {"$lt": now_ms()}}
            job = await self._take(lapsed, lease_ms)
        return job

    async def _take(self, query: Doc, lease_ms: int) -> JobRecord | None:
        now = now_ms()
        with database_errors():
            doc = await self._jobs.find_one_and_update(
                query,
                {
                    "$set": {
                        "state": JobState.RUNNING.value,
                        "owner": self.owner,
                        "lease_expires_at": now + lease_ms,
                        "started_at": now,
                        "updated_at": now,
                    },
                    "$inc": {"attempts": 1},
                },
                sort=_OLDEST_FIRST,
                return_document=ReturnDocument.AFTER,
            )
        return JobRecord.from_doc(doc) if doc else None

    async def assign_lanes(self, lane: str) -> int:
        """Put jobs queued before lanes existed into `lane`, so lane claims see them."""
        with database_errors():
            modified = 0
            for state in (JobState.QUEUED, JobState.RUNNING):
                result = await self._jobs.update_many(
                    {"state": eq(state.value), "lane": {"$exists": False}}, {"$set": {"lane": lane}}
                )
                modified += result.modified_count
        return modified

    async def renew(self, job_id: str, lease_ms: int) -> bool:
        """Extend our lease; False if the job is no longer ours."""
        with database_errors():
            result = await self._jobs.update_one(
                {"_id": eq(job_id), "owner": eq(self.owner), "state": eq(JobState.RUNNING.value)},
                {"$set": {"lease_expires_at": now_ms() + lease_ms}},
            )
        return result.matched_count == 1

    async def settle(
        self, job_id: str, state: JobState, error: str | None = None
    ) -> JobRecord | None:
        """Record the outcome (`done` or `failed`) of a job we hold; it frees the media's slot."""
        now = now_ms()
        changes = {
            "state": state.value,
            "error": error,
            "finished_at": now,
            "updated_at": now,
            "owner": None,
        }
        return await self._update_ours(job_id, {"$set": changes, "$unset": {"active_slot": ""}})

    async def retry(self, job_id: str, error: str) -> JobRecord | None:
        """Put a job back for another attempt (the attempt stays counted)."""
        changes: Doc = {"state": JobState.QUEUED.value, "error": error, "owner": None}
        changes["updated_at"] = now_ms()
        return await self._update_ours(job_id, {"$set": changes})

    async def release(self, job_id: str, *, suspect: bool) -> JobRecord | None:
        """Hand a job back uncharged (shutdown, or it was a bystander of a crash)."""
        changes: Doc = {"state": JobState.QUEUED.value, "owner": None, "suspect": suspect}
        changes["updated_at"] = now_ms()
        return await self._update_ours(job_id, {"$set": changes, "$inc": {"attempts": -1}})

    async def _update_ours(self, job_id: str, update: Doc) -> JobRecord | None:
        with database_errors():
            doc = await self._jobs.find_one_and_update(
                {"_id": eq(job_id), "owner": eq(self.owner)},
                update,
                return_document=ReturnDocument.AFTER,
            )
        return JobRecord.from_doc(doc) if doc else None
