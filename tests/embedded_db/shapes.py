"""Shared by the tests of where the embedded database (nx-27017 0.8.1 over neosqlite 1.17.2)
differs from MongoDB: seeded documents, the server's plans, and a `Twin` that plans like it.

Each test pins one deviation against the real server, through the pymongo async driver, and
names the shape mediasvc uses instead. Paths below are relative to site-packages.

The server has two query translators, and which one runs depends on the command:

- ``find`` (and ``find_one``) build SQL with ``QueryHelper._build_simple_where_clause``
  (neosqlite/collection/query_helper/_sql_query_builder.py); when it gives up, the cursor
  filters every document in Python (``Cursor._handle_python_fallback``, collection/cursor.py).
- ``count``, ``update``, ``delete`` and ``findAndModify`` use
  ``SQLClauseBuilder.build_where_clause`` (collection/sql_translator_unified.py, reached via
  ``SQLTranslator.translate_match``); when it gives up, they run the ``find`` above and use
  its documents (``QueryMethodsMixin.count_documents``, collection/query_engine/query_methods.py).

The two disagree on ``$ne``, on implicit equality and on ``$or``/``$in``/``$regex``, so a
shape that is right for one command can be wrong or slow for another.

Plans: the server's ``explain`` covers a ``find`` filter only (nx_27017/handler.py drops the
sort, limit and hint). For the rest, a `Twin` runs the same neosqlite code in this process on
an empty collection with the same indexes and records the SQL it executes; without ANALYZE
statistics SQLite plans from the schema alone, so the twin's plan is the server's
(`test_the_twin_plans_like_the_server` checks this). Timings are used only where the bad
shape is two orders of magnitude slower, and are asserted at 10x.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import neosqlite
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]
Keys = list[tuple[str, int]]

SEEDED = 6000  # media documents: enough for a 100x gap between a Python scan and an index
BY_ENTITY: Keys = [("entity_type", 1), ("entity_id", 1), ("sort_key", 1)]
BY_UPLOADER: Keys = [("uploaded_by", 1), ("sort_key", 1)]
BY_MEDIA_TYPE: Keys = [("media_type", 1), ("sort_key", 1)]
BY_KEY: Keys = [("sort_key", 1)]
LIST_ORDER: Keys = [("display_order", ASCENDING), ("created_at", DESCENDING)]
MEDIA_INDEXES = [BY_ENTITY, BY_UPLOADER, BY_MEDIA_TYPE, BY_KEY, LIST_ORDER]
BY_UPLOADER_TYPE: Keys = [("uploaded_by", 1), ("media_type", 1), ("sort_key", 1)]
BY_ENTITY_TYPE: Keys = [("entity_type", 1), ("entity_id", 1), ("media_type", 1), ("sort_key", 1)]
BY_ARM_AND_TYPE = [BY_UPLOADER_TYPE, BY_ENTITY_TYPE]  # one per owner arm, with media_type
CLAIM_ORDER: Keys = [("state", 1), ("suspect", 1), ("created_at", 1)]
GROUP_FALLBACK = "$group with parameterized expression key not supported in SQL tier"


def eq(value: Any) -> Doc:
    """The explicit equality every mediasvc query uses."""
    return {"$eq": value}


@dataclass
class Embedded:
    """The running server, a client of it, and its log."""

    client: AsyncMongoClient[Doc]
    log: Path

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


@dataclass
class Seeded:
    """The seeded media collection and an owner and entity that have media in it."""

    media: AsyncCollection[Doc]
    user: str
    entity: str

    def owner_arms(self) -> list[Doc]:
        """The three ways a caller owns media: uploader, own user entity, a granted entity."""
        return [
            {"uploaded_by": eq(self.user)},
            {"entity_type": eq("user"), "entity_id": eq(self.user)},
            {"entity_type": eq("service"), "entity_id": eq(self.entity)},
        ]


def media_documents(count: int, seed: int = 7) -> list[Doc]:
    """Media records like mediasvc's: a tenth on user entities, uploads spread over 60 users;
    `sort_key` is the list order (display order, newest first, then _id) as one ascending string."""
    rng = random.Random(seed)
    users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(60)]
    services = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(30)]
    documents = []
    for number in range(count):
        media_id = f"m{number:07d}"
        display_order = rng.choice([0, 0, 0, 1, 2])
        created_at = 1_700_000_000_000 + number
        user_entity = number % 10 == 0
        documents.append(
            {
                "_id": media_id,
                "entity_type": "user" if user_entity else "service",
                "entity_id": rng.choice(users) if user_entity else rng.choice(services),
                "uploaded_by": rng.choice(users),
                "media_type": rng.choice(["image", "video", "audio", "document"]),
                "status": "ready",
                "display_order": display_order,
                "created_at": created_at,
                "sort_key": f"{display_order:03d}{10**13 - created_at:013d}{media_id}",
                "search_text": f"photo_{number}.jpg\ntitle {number}",
            }
        )
    return documents


async def create_indexes(collection: AsyncCollection[Doc], indexes: list[Keys]) -> None:
    for keys in indexes:
        await collection.create_index(keys)


async def fresh(
    db: AsyncDatabase[Doc], documents: list[Doc], indexes: list[Keys]
) -> AsyncCollection[Doc]:
    """A new collection of this test's own, so its indexes change no other test's plans."""
    collection = db[f"c{uuid.uuid4().hex[:12]}"]
    if documents:
        await collection.insert_many(documents)
    await create_indexes(collection, indexes)
    return collection


async def find_plan(collection: AsyncCollection[Doc], query: Doc) -> list[str]:
    """The server's own plan of a find filter (SQLite's EXPLAIN QUERY PLAN lines)."""
    answer = await collection.database.command(
        "explain", {"find": collection.name, "filter": query}
    )
    return [step["detail"] for step in answer["queryPlanner"]["winningPlan"]]


async def count(collection: AsyncCollection[Doc], query: Doc) -> int:
    """The `count` command, which is how mediasvc counts."""
    answer = await collection.database.command("count", collection.name, query=query)
    return int(answer["n"])


async def ids(collection: AsyncCollection[Doc], query: Doc) -> list[Any]:
    return sorted(doc["_id"] for doc in await collection.find(query).to_list())


async def median_ms(run: Callable[[], Awaitable[object]], times: int = 5) -> float:
    await run()
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def assert_slower(
    bad: Callable[[], Awaitable[object]], good: Callable[[], Awaitable[object]]
) -> None:
    """`bad` takes at least ten times as long as `good` (medians)."""
    good_ms = await median_ms(good)
    bad_ms = await median_ms(bad, times=3)
    assert bad_ms >= 10 * good_ms, f"bad shape {bad_ms:.1f} ms, good shape {good_ms:.1f} ms"


class Twin:
    """An empty neosqlite collection with the server's indexes, created the way nx-27017's
    createIndexes creates them; it records the SQL neosqlite runs for an operation."""

    def __init__(self, name: str, indexes: list[Keys]) -> None:
        self._connection = neosqlite.Connection(":memory:")
        self.collection = self._connection[name]
        for keys in indexes:
            self.collection.create_index(keys)

    def close(self) -> None:
        self._connection.close()

    def statements(
        self, operation: Callable[[Any], object], kinds: tuple[str, ...] = ("SELECT",)
    ) -> list[str]:
        """The SELECTs (or statements of other `kinds`) that `operation(collection)` runs."""
        traced: list[str] = []
        self.collection.db.set_trace_callback(traced.append)
        try:
            operation(self.collection)
        finally:
            self.collection.db.set_trace_callback(None)
        return [sql.strip() for sql in traced if sql.lstrip().upper().startswith(kinds)]

    def plan(self, sql: str) -> list[str]:
        return [row[3] for row in self.collection.db.execute(f"EXPLAIN QUERY PLAN {sql}")]

    def plan_of(self, operation: Callable[[Any], object]) -> list[str]:
        """The plan of the one data query `operation` runs (it must run exactly one)."""
        queries = [sql for sql in self.statements(operation) if " FROM sqlite_" not in sql]
        assert len(queries) == 1, queries
        return self.plan(queries[0])

    def count_plan(self, query: Doc) -> list[str]:
        return self.plan_of(lambda c: c.count_documents(query))

    def find_plan(self, query: Doc, sort: Keys, limit: int = 21) -> list[str]:
        return self.plan_of(lambda c: list(c.find(query).sort(sort).limit(limit)))


@contextmanager
def twin(name: str, indexes: list[Keys]) -> Iterator[Twin]:
    copy = Twin(name, indexes)
    try:
        yield copy
    finally:
        copy.close()


def uses(plan: list[str], index: str) -> bool:
    """Whether the plan searches the table by `index` (the SQLite name)."""
    return any(step.startswith("SEARCH") and f"USING INDEX {index} " in step for step in plan)


def searches(plan: list[str]) -> list[str]:
    """The index searches of a plan, one per `$or` arm in a MULTI-INDEX OR."""
    return [step for step in plan if step.startswith("SEARCH")]


def full_scan(plan: list[str], table: str) -> bool:
    return any(step == f"SCAN {table}" or step.startswith(f"SCAN {table} ") for step in plan)
