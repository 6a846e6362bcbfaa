"""Media and job records in MongoDB, through pymongo's AsyncMongoClient.

Exactly one primary media per entity is enforced by the database: the primary record
carries ``primary_slot = "<entity_type>:<entity_id>"`` and a unique index that only
covers records having that field (sparse, so it is partial on any MongoDB-wire server).
At most one queued or running job per media is enforced the same way (``active_slot``).
File deletions that could not be done yet are kept in ``deletions`` until a sweep does them.
Events a change causes are pushed onto the record's ``outbox`` by the write that makes the
change; the webhook relay finds them through ``outbox_at`` and pulls them once relayed.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    DeleteOne,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from mediasvc.errors import InsufficientStorage, Unavailable
from mediasvc.listing import (
    ALL,
    Count,
    MediaPage,
    MediaQuery,
    Total,
    holding,
    merge,
    plan,
    probe,
    window,
    with_range,
)
from mediasvc.migrations import migrate_media
from mediasvc.records import (
    ACTIVE_JOB_STATES,
    DERIVED_SOURCES,
    Doc,
    JobRecord,
    MediaRecord,
    MediaStatus,
    derived_changed,
    derived_fields,
    now_ms,
    stored_changes,
)
from mediasvc.webhooks.events import Event
from mediasvc.write_groups import inserts_into, summed_changes

SORT_FIELD = "sort_key"
# Every list shape's index: an equality prefix, then the sort key (see mediasvc.listing).
MEDIA_INDEXES = {
    # The branch indexes carry the search text after the sort key: a search reads it from
    # the index instead of from each record (the embedded server's records are JSON text).
    "by_entity_key_text": ("entity_type", "entity_id", SORT_FIELD, "search_text"),
    "by_uploader_key_text": ("uploaded_by", SORT_FIELD, "search_text"),
    "by_type_key_text": ("entity_type", SORT_FIELD, "search_text"),
    "by_key_text": (SORT_FIELD, "search_text"),
    "by_media_type_key": ("media_type", SORT_FIELD),
    "by_status_key": ("status", SORT_FIELD),
    "pending_expiry": ("status", "upload_expires_at"),
    # Deduplication: an entity's media with one content, oldest first (see same_contents).
    # The content leads: an index led by the entity would tie with by_entity_key_text for
    # the entity arms of list counts, and the one created last wins a tie (operations.md).
    "by_content": ("sha256", "file_size", "entity_type", "entity_id", "created_at"),
    "outbox_order": ("outbox_at",),
}
# The media whose content counts as there: not a pending (no bytes yet) or failed one.
HAS_CONTENT = (MediaStatus.PROCESSING.value, MediaStatus.READY.value)
# The keys of indexes of earlier versions that no query uses any more.
RETIRED_INDEXES = (
    ("entity_type", "entity_id"),
    ("uploaded_by",),
    ("display_order", "created_at"),
    ("entity_type", SORT_FIELD),
    (SORT_FIELD,),
    ("entity_type", "entity_id", SORT_FIELD),
    ("uploaded_by", SORT_FIELD),
)
BRANCH_QUERIES_AT_ONCE = 4  # per repository (process): see _gathered
MEDIA_TOTAL = "media"  # the counters document of the maintained totals
TOTAL_MAPS = ("entity_types", "media_types")  # maintained totals by these fields
ANY_JOB: Any = object()  # `update(job_is=...)` default: whatever job the media shows
T = TypeVar("T")
log = logging.getLogger(__name__)


def eq(value: Any) -> Doc:
    """An explicit equality: index-served on every wire server (an implicit `{f: v}` is not,
    on the embedded one)."""
    return {"$eq": value}


def content_query(entity: Doc, sha256: str, size: int) -> Doc:
    """The media of an entity (its `$eq` terms) with this content and a usable status."""
    return {
        **entity,
        "sha256": eq(sha256),
        "file_size": eq(size),
        "status": {"$in": list(HAS_CONTENT)},
    }


def _pushed(events: Sequence[Event]) -> Doc:
    """The part of an update that puts `events` on a record's outbox: scalars pushed (the
    embedded server stores pushed documents as JSON text), the oldest time kept by `$min`."""
    if not events:
        return {}
    return {
        "$push": {"outbox": {"$each": [event.encode() for event in events]}},
        "$min": {"outbox_at": min(event.at for event in events)},
    }


def totals_change(records: Iterable[MediaRecord], sign: int = 1) -> dict[str, int]:
    """The `$inc` of the maintained totals for these records (entity types are identifiers:
    no dot or `$` in a field path)."""
    change: Counter[str] = Counter()
    for media in records:
        change.update(("n", f"entity_types.{media.entity_type}", f"media_types.{media.media_type}"))
    return {name: sign * n for name, n in change.items()}


class PrimaryTaken(Exception):
    """Another media of the entity became primary at the same moment."""


class JobActive(Exception):
    """The media already has a queued or running job (the database refused a second one)."""


OUT_OF_DISK_SPACE = 14031  # MongoDB's code for a write refused on a full disk
SQLITE_FULL = 8  # what the embedded server answers then ("database or disk is full")


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn an unreachable database into a 503 and a full one into a 507, so callers never
    hang or see a 500 for the database's trouble."""
    try:
        yield
    except DuplicateKeyError:
        raise
    except ConnectionFailure:
        raise Unavailable("Database unavailable, try again shortly") from None
    except OperationFailure as exc:
        if _disk_full(exc):
            log.warning("the database's disk is full: %s", exc)
            raise InsufficientStorage(
                "Not enough storage space for the database; try again later"
            ) from None
        raise
    except PyMongoError as exc:
        if getattr(exc, "timeout", False):
            raise Unavailable("Database unavailable, try again shortly") from None
        raise


def _disk_full(exc: OperationFailure) -> bool:
    """A write refused for a full disk, by MongoDB or by the embedded server (SQLite's
    SQLITE_FULL, with its message: code 8 alone is MongoDB's UnknownError); for a bulk
    write, any of its errors."""
    errors = [exc.details or {}]
    if isinstance(exc, BulkWriteError):
        errors = list((exc.details or {}).get("writeErrors") or [])
    for error in errors:
        code, message = error.get("code", exc.code), str(error.get("errmsg", exc))
        if code == OUT_OF_DISK_SPACE or (code == SQLITE_FULL and "disk is full" in message):
            return True
    return False


class MediaRepository(ABC):
    """Storage of media records and their processing jobs."""

    @abstractmethod
    async def ensure_indexes(self) -> None:
        """Create the indexes the queries and invariants rely on."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise Unavailable if the database does not answer."""

    @abstractmethod
    async def insert(self, media: MediaRecord, job: JobRecord | None = None) -> None:
        """Insert a new media record and then, if given, its first job (JobActive if the
        media has an active one already)."""

    @abstractmethod
    async def insert_many(self, records: Sequence[MediaRecord]) -> None:
        """Insert many new media records at once (seeding, imports)."""

    @abstractmethod
    async def get(self, media_id: str) -> MediaRecord | None:
        """One media record, or None."""

    @abstractmethod
    async def list_media(self, query: MediaQuery) -> MediaPage:
        """A page of media records in list order, and how many match in all."""

    @abstractmethod
    async def same_contents(
        self, entity_type: str, entity_id: str, contents: Sequence[tuple[str, int]]
    ) -> list[MediaRecord | None]:
        """For each (sha256, size), the oldest media of the entity with that content (not a
        pending or failed one), or None; in the order asked."""

    @abstractmethod
    async def increment(self, media_id: str, counter: str) -> MediaRecord | None:
        """Add one to a counter and return the record after the change."""

    @abstractmethod
    async def update(
        self,
        media_id: str,
        changes: Mapping[str, Any],
        unset: tuple[str, ...] = (),
        *,
        job_is: str | Any | None = ANY_JOB,
        events: Sequence[Event] = (),
    ) -> MediaRecord | None:
        """Set (and unset) fields of one record; with `job_is`, only while its job summary is
        that job's (or None: it has none); `events` go onto its outbox in the same write.
        Returns the record after the change."""

    @abstractmethod
    async def delete(self, media_id: str) -> MediaRecord | None:
        """Delete one record (and its jobs) and return what was deleted."""

    @abstractmethod
    async def make_primary(
        self, media: MediaRecord, changes: Mapping[str, Any]
    ) -> MediaRecord | None:
        """Make `media` the primary of its entity (clearing the old one); PrimaryTaken on a race."""

    @abstractmethod
    async def clear_primary(self, entity_type: str, entity_id: str, except_id: str) -> None:
        """Unmark the primary media of an entity unless it is `except_id`."""

    @abstractmethod
    async def transition(
        self,
        media_id: str,
        from_status: MediaStatus,
        changes: Mapping[str, Any],
        events: Sequence[Event] = (),
    ) -> MediaRecord | None:
        """Set fields only if the media still has `from_status` (one caller wins a race);
        `events` go onto its outbox in the same write."""

    @abstractmethod
    async def with_events(self, limit: int) -> list[MediaRecord]:
        """Records whose outbox holds events, oldest event first."""

    @abstractmethod
    async def remove_events(self, relayed: Mapping[str, Sequence[str]]) -> None:
        """Take these outbox entries (by media id) off their records; entries pushed since
        they were read stay."""

    @abstractmethod
    async def expired_pending(self, before: int, limit: int) -> list[MediaRecord]:
        """Pending media whose upload URL expired before `before` (ms)."""

    @abstractmethod
    async def stalled_processing(
        self, before: int, after_key: str, limit: int
    ) -> list[MediaRecord]:
        """Processing media last changed before `before` (ms), in sort-key order after
        `after_key` (to page through them)."""

    @abstractmethod
    async def jobs_present(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs exist, in whatever state."""

    @abstractmethod
    async def migrate(self) -> dict[str, int]:
        """Bring records written by earlier versions up to date (idempotent, resumable)."""

    @abstractmethod
    async def insert_job(self, job: JobRecord) -> None:
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
        self._counters = self._db["counters"]
        # An upload's writes, grouped with those of concurrent uploads (see write_groups).
        self._media_inserts = inserts_into(self._media)
        self._job_inserts = inserts_into(self._jobs)
        self._totals_changes = summed_changes(self._move_totals)
        self._branch_slots = asyncio.Semaphore(BRANCH_QUERIES_AT_ONCE)

    async def ensure_indexes(self) -> None:
        with database_errors():
            await self._media.create_index(
                [("primary_slot", ASCENDING)],
                unique=True,
                sparse=True,
                name="one_primary_per_entity",
            )
            for name, keys in MEDIA_INDEXES.items():
                await self._media.create_index([(k, ASCENDING) for k in keys], name=name)
            await self._drop_retired_indexes()
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
                [("state", ASCENDING), ("lease_expires_at", ASCENDING)], name="lease_expiry"
            )
            await self._jobs.create_index(
                [("active_slot", ASCENDING)],
                unique=True,
                sparse=True,
                name="one_active_job_per_media",
            )
            await self._deletions.create_index([("not_before", ASCENDING)], name="due_order")
        await self._mark_active_jobs()

    async def _drop_retired_indexes(self) -> None:
        """Drop the indexes of earlier versions, found by their keys: the embedded server
        names indexes after their keys, not as they were asked to be named."""
        for name, spec in (await self._media.index_information()).items():
            if tuple(key for key, _ in spec["key"]) in RETIRED_INDEXES:
                with suppress(OperationFailure):
                    await self._media.drop_index(name)

    async def _mark_active_jobs(self) -> None:
        """Jobs queued before `active_slot` existed get it, so the index covers them too."""
        with database_errors():
            for state in ACTIVE_JOB_STATES:
                query = {"state": eq(state.value), "active_slot": {"$exists": False}}
                cursor = self._jobs.find(query)
                for job in await cursor.to_list():
                    with suppress(DuplicateKeyError):  # a duplicate of an older one: left as is
                        await self._jobs.update_one(
                            {"_id": eq(job["_id"])}, {"$set": {"active_slot": job["media_id"]}}
                        )

    async def ping(self) -> None:
        with database_errors():
            await self._db.command("ping")

    # ---- media records

    async def insert(self, media: MediaRecord, job: JobRecord | None = None) -> None:
        # The media first: a job claimed before its media exists would fail it. Its count
        # and its job then go together, in one round trip's time.
        with database_errors():
            await self._media_inserts.write(media.to_doc())
        steps = [self._count_media([media]), *([self.insert_job(job)] if job is not None else [])]
        results = await asyncio.gather(*steps, return_exceptions=True)
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome

    async def insert_many(self, records: Sequence[MediaRecord]) -> None:
        if records:
            with database_errors():
                await self._media.insert_many([media.to_doc() for media in records])
                await self._count_media(records)

    async def get(self, media_id: str) -> MediaRecord | None:
        with database_errors():
            doc = await self._media.find_one({"_id": eq(media_id)})
        return MediaRecord.from_doc(doc) if doc else None

    async def list_media(self, query: MediaQuery) -> MediaPage:
        """Each branch of the query's plan fetched and merged by sort key, and counted.

        A count is cheap from an index or a maintained total and runs beside the fetch. A
        search's count reads every record of its branches, so it runs after: a branch whose
        fetch came back short of its limit has been read whole and counts itself (a miss, or
        a rare hit, costs one pass instead of two)."""
        branches = plan(query)
        with database_errors():
            if query.search:
                fetched, sizes = await self._fetch(query, branches.fetch)
                count = await self._count(branches.count, sizes)
            else:
                (fetched, _), count = await asyncio.gather(
                    self._fetch(query, branches.fetch), self._count(branches.count)
                )
        has_more = len(fetched) > query.limit
        items = fetched[: query.limit]
        if query.cursor is not None and query.cursor.before:
            items.reverse()
        return MediaPage(items, count, has_more)

    async def _fetch(
        self, query: MediaQuery, branches: list[Doc]
    ) -> tuple[list[MediaRecord], list[int | None]]:
        """The merged page, and each branch's size when its fetch read it whole.

        Without a search the other branches are fetched only up to where the densest one's
        page ends (most then come back empty). A search fetches each branch up to a page
        instead, all at once: its small branches then come back short and count themselves,
        which saves a count each."""
        key_range, offset, wanted = window(query)
        descending = query.cursor is not None and query.cursor.before
        direction = DESCENDING if descending else ASCENDING
        whole = query.cursor is None  # what a fetch reads of a branch is all of it
        if len(branches) == 1:  # the database skips
            cursor = self._media.find(with_range(branches[0], key_range))
            docs = await cursor.sort(SORT_FIELD, direction).skip(offset).limit(wanted).to_list()
            short = whole and len(docs) < wanted and (docs or not offset)
            return [MediaRecord.from_doc(doc) for doc in docs], [
                offset + len(docs) if short else None
            ]
        limit = offset + wanted
        if query.search:
            steps = (self._page(branch, key_range, direction, limit) for branch in branches)
            pages, bounded = await self._gathered(steps), False
        else:
            pages, bounded = await self._bounded_pages(branches, key_range, direction, limit)
        records = [[MediaRecord.from_doc(doc) for doc in page] for page in pages]
        sizes = [len(page) if whole and len(page) < limit else None for page in pages]
        if bounded:  # a bounded branch read whole is not its whole size
            sizes = [sizes[0], *(None for _ in branches[1:])]
        return merge(records, descending)[offset : offset + wanted], sizes

    async def _bounded_pages(
        self, branches: list[Doc], key_range: Doc, direction: int, limit: int
    ) -> tuple[list[list[Doc]], bool]:
        """The lead branch's page (the densest first: a whole entity type, if granted), then
        the others' up to where the lead's ends, of those that have records that far (most
        have none); and whether they were so bounded (their sizes are then not known)."""
        lead, *others = branches
        first = await self._page(lead, key_range, direction, limit)
        bounded = len(first) == limit
        if bounded:
            bound = {"$gte" if direction == DESCENDING else "$lte": first[-1][SORT_FIELD]}
            key_range = {**key_range, **bound}
            if len(others) > 1:  # which of them have records that far: one query, not one each
                ranged = probe([with_range(branch, key_range) for branch in others])
                others = holding(others, await self._media.distinct("entity_slot", ranged))
        rest = await self._gathered(self._page(b, key_range, direction, limit) for b in others)
        return [first, *rest], bounded

    async def _page(self, branch: Doc, key_range: Doc, direction: int, limit: int) -> list[Doc]:
        cursor = self._media.find(with_range(branch, key_range)).sort(SORT_FIELD, direction)
        return await cursor.limit(limit).to_list()

    async def _gathered(self, steps: Iterable[Awaitable[T]]) -> list[T]:
        """Run a request's branch queries a few at a time: the embedded server answers one
        query at a time anyway, and a burst of new connections while it is busy with a
        long scan makes the driver give up on it."""

        async def bounded(step: Awaitable[T]) -> T:
            async with self._branch_slots:
                return await step

        return list(await asyncio.gather(*(bounded(step) for step in steps)))

    async def _count(self, count: Count, known: list[int | None] | None = None) -> int:
        """Maintained totals plus the counted filters; sizes `known` from the fetch (aligned
        with its branches) are not asked of the database."""
        sizes = known if count.by_branch and known and len(known) == len(count.add) else None
        asked = [
            self._count_filter(where)
            for n, where in enumerate(count.add)
            if sizes is None or sizes[n] is None
        ]
        totals = [self._maintained(count.totals)] if count.totals else []
        counted = await self._gathered([*asked, *totals])
        return sum(counted) + sum(n for n in sizes or () if n is not None)

    async def _count_filter(self, where: Doc) -> int:
        """The `count` command: index-served on every wire server (pymongo's
        `count_documents` is an aggregation that the embedded server runs in Python).

        Except for a search beyond one entity or uploader: the embedded server's `count`
        reads each record its `$expr` matches into Python, where an aggregation's `$match`
        then `$count` is one SQL count (after a count of the whole collection: a fixed cost
        that pays off only for a branch that can match many)."""
        if "$expr" in where and not {"entity_id", "uploaded_by"} & set(where):
            pipeline: list[Doc] = [{"$match": where}, {"$count": "n"}]
            counted = await (await self._media.aggregate(pipeline)).to_list()
            return int(counted[0]["n"]) if counted else 0
        answer = await self._db.command("count", self._media.name, query=where)
        return int(answer["n"])

    async def _maintained(self, totals: tuple[Total, ...]) -> int:
        """The sum of some maintained totals (an absent key: no such record)."""
        counter = await self._counters.find_one({"_id": eq(MEDIA_TOTAL)})
        if counter is None or any(name not in counter for name in TOTAL_MAPS):
            await self.recount()  # first use, or the totals of an earlier version
            counter = await self._counters.find_one({"_id": eq(MEDIA_TOTAL)}) or {}
        return sum(
            int(counter.get("n", 0)) if total == ALL else int(counter[total[0]].get(total[1], 0))
            for total in totals
        )

    async def _count_media(self, records: Sequence[MediaRecord], sign: int = 1) -> None:
        """Move the maintained totals by these records (inserted; or deleted, -1).

        Never by an upsert: the embedded server's upsert stores a dotted `$inc` key as one
        flat field name. With no totals yet they are counted instead (the records are in)."""
        with database_errors():
            await self._totals_changes.write(totals_change(records, sign))

    async def _move_totals(self, change: dict[str, int]) -> None:
        """One `$inc` of the maintained totals: the changes of a group, summed."""
        result = await self._counters.update_one({"_id": eq(MEDIA_TOTAL)}, {"$inc": change})
        if not result.matched_count:
            await self.recount()

    async def recount(self) -> int:
        """Set the maintained totals to fresh counts, each an index-served `count`.

        They drift only if a process dies between a record's insert or delete and the move
        of its totals; `migrate` (at every start-up) finds such a drift and recounts."""
        with database_errors():
            total = await self._count_filter({})
            entity_types = await self._counted_by("entity_type")
            media_types = await self._counted_by("media_type")
            await self._counters.update_one(
                {"_id": eq(MEDIA_TOTAL)},
                {"$set": {"n": total, "entity_types": entity_types, "media_types": media_types}},
                upsert=True,
            )
        return total

    async def _counted_by(self, field: str) -> dict[str, int]:
        values = [value for value in await self._media.distinct(field) if isinstance(value, str)]
        return {value: await self._count_filter({field: eq(value)}) for value in values}

    async def totals_drifted(self) -> bool:
        """Whether the maintained totals disagree with a count of the records, or with each
        other: what a process that died between a write and the move of its totals leaves."""
        with database_errors():
            counter = await self._counters.find_one({"_id": eq(MEDIA_TOTAL)})
            if counter is None or any(name not in counter for name in TOTAL_MAPS):
                return True
            total = await self._count_filter({})
        sums = [sum(int(n) for n in counter[name].values()) for name in TOTAL_MAPS]
        return any(n != total for n in (int(counter["n"]), *sums))

    async def same_contents(
        self, entity_type: str, entity_id: str, contents: Sequence[tuple[str, int]]
    ) -> list[MediaRecord | None]:
        """One query per content, each a search of `by_content` (its four equalities) read
        in its order; the status only narrows what it found. (An `$or` of the contents in
        one `find` would be filtered in Python over the whole collection on the embedded
        server: docs/operations.md.)"""
        entity = {"entity_type": eq(entity_type), "entity_id": eq(entity_id)}
        with database_errors():
            found = await self._gathered(
                self._first(content_query(entity, sha256, size)) for sha256, size in contents
            )
        return [MediaRecord.from_doc(doc) if doc else None for doc in found]

    async def _first(self, where: Doc) -> Doc | None:
        cursor = self._media.find(where).sort("created_at", ASCENDING).limit(1)
        docs = await cursor.to_list()
        return docs[0] if docs else None

    async def increment(self, media_id: str, counter: str) -> MediaRecord | None:
        with database_errors():
            doc = await self._media.find_one_and_update(
                {"_id": eq(media_id)},
                {"$inc": {counter: 1}},
                return_document=ReturnDocument.AFTER,
            )
        return MediaRecord.from_doc(doc) if doc else None

    async def update(
        self,
        media_id: str,
        changes: Mapping[str, Any],
        unset: tuple[str, ...] = (),
        *,
        job_is: str | Any | None = ANY_JOB,
        events: Sequence[Event] = (),
    ) -> MediaRecord | None:
        operation: Doc = {"$set": stored_changes(changes), **_pushed(events)}
        if unset:
            operation["$unset"] = {name: "" for name in unset}
        where: Doc = {"_id": eq(media_id)}
        if job_is is not ANY_JOB:
            where.update({"job": None} if job_is is None else {"job.id": eq(job_is)})
        with database_errors():
            doc = await self._media.find_one_and_update(
                where, operation, return_document=ReturnDocument.AFTER
            )
            if doc is not None and derived_changed(changes):
                doc = await self._refresh_derived(doc)
        return MediaRecord.from_doc(doc) if doc else None

    async def _refresh_derived(self, doc: Doc) -> Doc:
        """Store the sort key and search text of a record whose sources just changed.

        Conditional on the sources it was computed from, so of two changes racing, the one
        whose sources are current wins and the derived fields always match the record."""
        record = MediaRecord.from_doc(doc)
        derived = derived_fields(record)
        if all(doc.get(name) == value for name, value in derived.items()):
            return doc
        sources = {name: eq(doc[name]) for name in DERIVED_SOURCES if name in doc}
        await self._media.update_one({"_id": eq(record.id), **sources}, {"$set": derived})
        return {**doc, **derived}

    async def delete(self, media_id: str) -> MediaRecord | None:
        with database_errors():
            doc = await self._media.find_one_and_delete({"_id": eq(media_id)})
            if doc is None:
                return None
            await asyncio.gather(
                self._jobs.delete_many({"media_id": eq(media_id)}),
                self._count_media([MediaRecord.from_doc(doc)], -1),
            )
        return MediaRecord.from_doc(doc)

    async def make_primary(
        self, media: MediaRecord, changes: Mapping[str, Any]
    ) -> MediaRecord | None:
        slot = media.entity_slot
        await self.clear_primary(media.entity_type, media.entity_id, except_id=media.id)
        # update_one, not find_one_and_update: every wire server reports a unique-index
        # violation from it (the embedded one silently returns None from the latter).
        try:
            with database_errors():
                result = await self._media.update_one(
                    {"_id": eq(media.id)},
                    {"$set": {**stored_changes(changes), "is_primary": True, "primary_slot": slot}},
                )
        except DuplicateKeyError:
            raise PrimaryTaken(slot) from None
        if not result.matched_count:
            return None
        if derived_changed(changes):
            return await self.update(media.id, {})  # refreshes the derived fields
        return await self.get(media.id)

    async def clear_primary(self, entity_type: str, entity_id: str, except_id: str) -> None:
        with database_errors():
            await self._media.update_many(
                {"primary_slot": eq(f"{entity_type}:{entity_id}"), "_id": {"$ne": except_id}},
                {"$set": {"is_primary": False}, "$unset": {"primary_slot": ""}},
            )

    async def transition(
        self,
        media_id: str,
        from_status: MediaStatus,
        changes: Mapping[str, Any],
        events: Sequence[Event] = (),
    ) -> MediaRecord | None:
        with database_errors():
            result = await self._media.update_one(
                {"_id": eq(media_id), "status": eq(from_status.value)},
                {"$set": stored_changes(changes), **_pushed(events)},
            )
        return await self.get(media_id) if result.matched_count else None

    async def with_events(self, limit: int) -> list[MediaRecord]:
        with database_errors():
            cursor = self._media.find({"outbox_at": {"$gte": 0}}).sort("outbox_at", ASCENDING)
            docs = await cursor.limit(limit).to_list()
        return [MediaRecord.from_doc(doc) for doc in docs]

    async def remove_events(self, relayed: Mapping[str, Sequence[str]]) -> None:
        """Per record, `$pullAll` of exactly the entries relayed, then the outbox and its
        time are unset only if nothing is left: an event pushed meanwhile keeps both."""
        steps = []
        for media_id, entries in relayed.items():
            steps.append(UpdateOne({"_id": eq(media_id)}, {"$pullAll": {"outbox": list(entries)}}))
            steps.append(
                UpdateOne(
                    {"_id": eq(media_id), "outbox": {"$size": 0}},
                    {"$unset": {"outbox": "", "outbox_at": ""}},
                )
            )
        if steps:
            with database_errors():
                await self._media.bulk_write(steps, ordered=True)

    async def expired_pending(self, before: int, limit: int) -> list[MediaRecord]:
        with database_errors():
            cursor = self._media.find(
                {"status": eq(MediaStatus.PENDING.value), "upload_expires_at": {"$lt": before}}
            )
            docs = await cursor.limit(limit).to_list()
        return [MediaRecord.from_doc(doc) for doc in docs]

    async def stalled_processing(
        self, before: int, after_key: str, limit: int
    ) -> list[MediaRecord]:
        # The status index, then the sort key: few media are processing at any one time.
        query = {
            "status": eq(MediaStatus.PROCESSING.value),
            SORT_FIELD: {"$gt": after_key},
            "updated_at": {"$lt": before},
        }
        with database_errors():
            cursor = self._media.find(query).sort(SORT_FIELD, ASCENDING).limit(limit)
            docs = await cursor.to_list()
        return [MediaRecord.from_doc(doc) for doc in docs]

    async def jobs_present(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        with database_errors():  # `$in` on `_id` is a plain lookup on every server
            cursor = self._jobs.find({"_id": {"$in": list(job_ids)}}, {"_id": 1})
            return {doc["_id"] for doc in await cursor.to_list()}

    async def migrate(self) -> dict[str, int]:
        report = await migrate_media(self._db, self._media, self.recount)
        if await self.totals_drifted():
            total = await self.recount()
            log.warning("the maintained media totals had drifted: recounted %d records", total)
        return report

    async def insert_job(self, job: JobRecord) -> None:
        try:
            with database_errors():
                await self._job_inserts.write(job.to_doc())
        except DuplicateKeyError:
            raise JobActive(job.media_id) from None

    async def record_deletions(
        self, keys: list[str], media_id: str | None, not_before: int
    ) -> None:
        now = now_ms()
        upserts = [
            UpdateOne(
                {"_id": eq(key)},
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
            with database_errors():  # one round trip, each by `_id` ($in is not index-served)
                await self._deletions.bulk_write(
                    [DeleteOne({"_id": eq(key)}) for key in keys], ordered=False
                )

    async def deletions_failed(self, keys: list[str], error: str) -> None:
        with database_errors():
            change = {"$inc": {"attempts": 1}, "$set": {"error": error[:500]}}
            await self._deletions.bulk_write(
                [UpdateOne({"_id": eq(key)}, change) for key in keys], ordered=False
            )

    async def count_deletions(self) -> int:
        with database_errors():
            answer = await self._db.command("count", self._deletions.name)
            return int(answer["n"])

    async def count_jobs(self, states: tuple[str, ...]) -> dict[str, int]:
        counts = {}
        with database_errors():
            for state in states:
                answer = await self._db.command(
                    "count", self._jobs.name, query={"state": eq(state)}
                )
                counts[state] = int(answer["n"])
        return counts

    @property
    def jobs_collection(self) -> Any:
        return self._jobs

    async def close(self) -> None:
        await self._client.close()
