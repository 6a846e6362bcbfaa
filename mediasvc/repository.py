"""Media and job records in MongoDB, through pymongo's AsyncMongoClient.

Exactly one primary media per entity is enforced by the database: the primary record
carries ``primary_slot = "<entity_type>:<entity_id>"`` and a unique index that only
covers records having that field (sparse, so it is partial on any MongoDB-wire server).
At most one queued or running job per media is enforced the same way (``active_slot``).
File deletions that could not be done yet are kept in ``deletions`` until a sweep does them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from mediasvc.errors import Unavailable
from mediasvc.pipeline.jobs import ACTIVE_STATES

Doc = dict[str, Any]
LIST_ORDER = [("display_order", ASCENDING), ("created_at", DESCENDING), ("_id", ASCENDING)]


class PrimaryTaken(Exception):
    """Another media of the entity became primary at the same moment."""


class JobActive(Exception):
    """The media already has a queued or running job (the database refused a second one)."""


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn an unreachable database into a 503, so callers never hang or see a 500."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except ConnectionFailure:
        raise Unavailable("Database unavailable, try again shortly") from None
    except OperationFailure:
        raise
    except PyMongoError as exc:
        if getattr(exc, "timeout", False):
            raise Unavailable("Database unavailable, try again shortly") from None
        raise


class MediaRepository(ABC):
    """Storage of media records and their processing jobs."""

    @abstractmethod
    async def ensure_indexes(self) -> None:
        """Create the indexes the queries and invariants rely on."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise Unavailable if the database does not answer."""

    @abstractmethod
    async def insert(self, media: Doc) -> None:
        """Insert a new media record."""

    @abstractmethod
    async def get(self, media_id: str) -> Doc | None:
        """One media record, or None."""

    @abstractmethod
    async def find(self, query: Doc, skip: int, limit: int) -> list[Doc]:
        """A page of media records in list order."""

    @abstractmethod
    async def count(self, query: Doc) -> int:
        """How many media records match."""

    @abstractmethod
    async def increment(self, media_id: str, counter: str) -> Doc | None:
        """Add one to a counter and return the record after the change."""

    @abstractmethod
    async def update(
        self, media_id: str, changes: Doc, unset: tuple[str, ...] = (), where: Doc | None = None
    ) -> Doc | None:
        """Set (and unset) fields of one record (if it also matches `where`); return it after."""

    @abstractmethod
    async def update_many(self, media_ids: list[str], changes: Doc) -> int:
        """Set fields on several records; returns how many matched."""

    @abstractmethod
    async def delete(self, media_id: str) -> Doc | None:
        """Delete one record (and its jobs) and return what was deleted."""

    @abstractmethod
    async def make_primary(self, media: Doc, changes: Doc) -> Doc | None:
        """Make `media` the primary of its entity (clearing the old one); PrimaryTaken on a race."""

    @abstractmethod
    async def clear_primary(self, entity_type: str, entity_id: str, except_id: str) -> None:
        """Unmark the primary media of an entity unless it is `except_id`."""

    @abstractmethod
    async def transition(self, media_id: str, from_status: str, changes: Doc) -> Doc | None:
        """Set fields only if the media still has `from_status` (one caller wins a race)."""

    @abstractmethod
    async def expired_pending(self, before: int, limit: int) -> list[Doc]:
        """Pending media whose upload URL expired before `before` (ms)."""

    @abstractmethod
    async def insert_job(self, job: Doc) -> None:
        """Queue a processing job; JobActive if its media already has an active one."""

    @abstractmethod
    async def record_deletions(
        self, keys: list[str], media_id: str | None, not_before: int
    ) -> None:
        """Remember that these storage keys must be deleted (not before `not_before`, ms)."""

    @abstractmethod
    async def due_deletions(self, now: int, limit: int) -> list[Doc]:
        """Recorded deletions whose time has come, oldest first."""

    @abstractmethod
    async def forget_deletions(self, keys: list[str]) -> None:
        """Drop the records of deletions that are done (or no longer wanted)."""

    @abstractmethod
    async def deletions_failed(self, keys: list[str], error: str) -> None:
        """Count a failed attempt at these deletions."""

    @abstractmethod
    async def count_deletions(self) -> int:
        """How many file deletions are still to be done."""

    @abstractmethod
    async def count_jobs(self, states: tuple[str, ...]) -> dict[str, int]:
        """How many jobs are in each of `states`."""

    @property
    @abstractmethod
    def jobs_collection(self) -> Any:
        """The collection the job queue works on."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


class MongoMediaRepository(MediaRepository):
    """MediaRepository over a MongoDB (or wire-compatible) database."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self._client = client
        self._db: AsyncDatabase[Doc] = client[database]
        self._media = self._db["media"]
        self._jobs = self._db["jobs"]
        self._deletions = self._db["deletions"]

    async def ensure_indexes(self) -> None:
        with database_errors():
            await self._media.create_index(
                [("primary_slot", ASCENDING)],
                unique=True,
                sparse=True,
                name="one_primary_per_entity",
            )
            await self._media.create_index(
                [("entity_type", ASCENDING), ("entity_id", ASCENDING)], name="by_entity"
            )
            await self._media.create_index([("uploaded_by", ASCENDING)], name="by_uploader")
            await self._media.create_index(
                [("status", ASCENDING), ("upload_expires_at", ASCENDING)], name="pending_expiry"
            )
            await self._media.create_index(LIST_ORDER[:2], name="list_order")
            await self._jobs.create_index([("media_id", ASCENDING)], name="by_media")
            await self._jobs.create_index(
                [("state", ASCENDING), ("suspect", ASCENDING), ("created_at", ASCENDING)],
                name="claim_order",
            )
            await self._jobs.create_index(
                [
                    ("state", ASCENDING),
                    ("suspect", ASCENDING),
                    ("lane", ASCENDING),
                    ("created_at", ASCENDING),
                ],
                name="claim_order_by_lane",
            )
            await self._jobs.create_index(
                [("active_slot", ASCENDING)],
                unique=True,
                sparse=True,
                name="one_active_job_per_media",
            )
            await self._deletions.create_index([("not_before", ASCENDING)], name="due_order")
        await self._mark_active_jobs()

    async def _mark_active_jobs(self) -> None:
        """Jobs queued before `active_slot` existed get it, so the index covers them too."""
        with database_errors():
            cursor = self._jobs.find(
                {"state": {"$in": list(ACTIVE_STATES)}, "active_slot": {"$exists": False}}
            )
            for job in await cursor.to_list():
                with suppress(DuplicateKeyError):  # a duplicate of an older one: left as it is
                    await self._jobs.update_one(
                        {"_id": job["_id"]}, {"$set": {"active_slot": job["media_id"]}}
                    )

    async def ping(self) -> None:
        with database_errors():
            await self._db.command("ping")

    async def insert(self, media: Doc) -> None:
        with database_errors():
            await self._media.insert_one(media)

    async def get(self, media_id: str) -> Doc | None:
        with database_errors():
            return await self._media.find_one({"_id": media_id})

    async def find(self, query: Doc, skip: int, limit: int) -> list[Doc]:
        with database_errors():
            cursor = self._media.find(query).sort(LIST_ORDER).skip(skip).limit(limit)
            return await cursor.to_list()

    async def count(self, query: Doc) -> int:
        with database_errors():
            return await self._media.count_documents(query)

    async def increment(self, media_id: str, counter: str) -> Doc | None:
        with database_errors():
            return await self._media.find_one_and_update(
                {"_id": media_id}, {"$inc": {counter: 1}}, return_document=ReturnDocument.AFTER
            )

    async def update(
        self, media_id: str, changes: Doc, unset: tuple[str, ...] = (), where: Doc | None = None
    ) -> Doc | None:
        operation: Doc = {"$set": changes}
        if unset:
            operation["$unset"] = {name: "" for name in unset}
        with database_errors():
            return await self._media.find_one_and_update(
                {**(where or {}), "_id": media_id}, operation, return_document=ReturnDocument.AFTER
            )

    async def update_many(self, media_ids: list[str], changes: Doc) -> int:
        with database_errors():
            result = await self._media.update_many({"_id": {"$in": media_ids}}, {"$set": changes})
            return result.matched_count

    async def delete(self, media_id: str) -> Doc | None:
        with database_errors():
            media = await self._media.find_one_and_delete({"_id": media_id})
            if media is not None:
                await self._jobs.delete_many({"media_id": media_id})
            return media

    async def make_primary(self, media: Doc, changes: Doc) -> Doc | None:
        slot = f"{media['entity_type']}:{media['entity_id']}"
        await self.clear_primary(media["entity_type"], media["entity_id"], except_id=media["_id"])
        # update_one, not find_one_and_update: every wire server reports a unique-index
        # violation from it (the embedded one silently returns None from the latter).
        try:
            with database_errors():
                result = await self._media.update_one(
                    {"_id": media["_id"]},
                    {"$set": {**changes, "is_primary": True, "primary_slot": slot}},
                )
        except DuplicateKeyError:
            raise PrimaryTaken(slot) from None
        return await self.get(media["_id"]) if result.matched_count else None

    async def clear_primary(self, entity_type: str, entity_id: str, except_id: str) -> None:
        with database_errors():
            await self._media.update_many(
                {"primary_slot": f"{entity_type}:{entity_id}", "_id": {"$ne": except_id}},
                {"$set": {"is_primary": False}, "$unset": {"primary_slot": ""}},
            )

    async def transition(self, media_id: str, from_status: str, changes: Doc) -> Doc | None:
        with database_errors():
            result = await self._media.update_one(
                {"_id": media_id, "status": from_status}, {"$set": changes}
            )
        return await self.get(media_id) if result.matched_count else None

    async def expired_pending(self, before: int, limit: int) -> list[Doc]:
        with database_errors():
            cursor = self._media.find({"status": "pending", "upload_expires_at": {"$lt": before}})
            return await cursor.limit(limit).to_list()

    async def insert_job(self, job: Doc) -> None:
        try:
            with database_errors():
                await self._jobs.insert_one(job)
        except DuplicateKeyError:
            raise JobActive(job["media_id"]) from None

    async def record_deletions(
        self, keys: list[str], media_id: str | None, not_before: int
    ) -> None:
        now = time.time_ns() // 1_000_000
        upserts = [
            UpdateOne(
                {"_id": key},
                {
                    "$set": {"media_id": media_id, "not_before": not_before, "updated_at": now},
                    "$setOnInsert": {"created_at": now, "attempts": 0, "error": None},
                },
                upsert=True,
            )
            for key in keys
        ]
        with database_errors():
            await self._deletions.bulk_write(upserts, ordered=False)

    async def due_deletions(self, now: int, limit: int) -> list[Doc]:
        with database_errors():
            cursor = self._deletions.find({"not_before": {"$lte": now}}).sort("not_before", 1)
            return await cursor.limit(limit).to_list()

    async def forget_deletions(self, keys: list[str]) -> None:
        if keys:
            with database_errors():
                await self._deletions.delete_many({"_id": {"$in": keys}})

    async def deletions_failed(self, keys: list[str], error: str) -> None:
        with database_errors():
            await self._deletions.update_many(
                {"_id": {"$in": keys}}, {"$inc": {"attempts": 1}, "$set": {"error": error[:500]}}
            )

    async def count_deletions(self) -> int:
        with database_errors():
            return await self._deletions.count_documents({})

    async def count_jobs(self, states: tuple[str, ...]) -> dict[str, int]:
        counts = {}
        with database_errors():
            for state in states:
                counts[state] = await self._jobs.count_documents({"state": state})
        return counts

    @property
    def jobs_collection(self) -> Any:
        return self._jobs

    async def close(self) -> None:
        await self._client.close()
