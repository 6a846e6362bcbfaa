"""Where the embedded database (nx-27017 0.8.1 over neosqlite 1.17.2) differs from MongoDB.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import neosqlite
import pytest
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from mediasvc.embedded_db import EmbeddedMongo

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


@pytest.fixture(scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Embedded]:
    """The embedded database as mediasvc starts it, in memory, for this module alone."""
    folder = tmp_path_factory.mktemp("embedded-db")
    server = EmbeddedMongo(folder, in_memory=True, start_timeout=20)
    uri = await server.start()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(uri)
    try:
        yield Embedded(client, folder / "db" / "nx-27017.log")
    finally:
        await client.close()
        server.stop()


@pytest.fixture(scope="module")
def db(embedded: Embedded) -> AsyncDatabase[Doc]:
    return embedded.client["shapes"]


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


@pytest.fixture(scope="module")
async def seeded(db: AsyncDatabase[Doc]) -> Seeded:
    documents = media_documents(SEEDED)
    media = db["media"]
    for start in range(0, len(documents), 2000):
        await media.insert_many(documents[start : start + 2000])
    await create_indexes(media, MEDIA_INDEXES)
    owner = documents[10]  # a user entity: its owner also uploaded elsewhere
    service = documents[11]
    return Seeded(media, owner["entity_id"], service["entity_id"])


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

    def statements(self, operation: Callable[[Any], object]) -> list[str]:
        """The SELECTs that `operation(collection)` runs."""
        traced: list[str] = []
        self.collection.db.set_trace_callback(traced.append)
        try:
            operation(self.collection)
        finally:
            self.collection.db.set_trace_callback(None)
        return [sql.strip() for sql in traced if sql.lstrip().upper().startswith("SELECT")]

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


# ---- the twin itself


async def test_the_twin_plans_like_the_server(seeded: Seeded) -> None:
    """The twin's plans equal the server's explain for the same filters: the plans the other
    tests read from the twin are the ones the server runs."""
    queries = [
        {"uploaded_by": eq(seeded.user)},
        {"uploaded_by": seeded.user},
        {"entity_type": eq("user"), "entity_id": eq(seeded.user), "media_type": eq("image")},
        {"uploaded_by": eq(seeded.user), "media_type": eq("image")},
        {"$or": seeded.owner_arms()},
    ]
    with twin("media", MEDIA_INDEXES) as copy:
        for query in queries:
            local = copy.plan_of(lambda c, q=query: list(c.find(q)))
            assert local == await find_plan(seeded.media, query), query


# ---- indexes


async def test_partial_filter_is_ignored_so_a_unique_partial_index_is_unique_everywhere(
    db: AsyncDatabase[Doc],
) -> None:
    """nx_27017 handler.py createIndexes passes only key, name, unique, sparse (and fts,
    TTL) on: `partialFilterExpression` is dropped, and the index covers every document.
    A unique index meant for active jobs then refuses a second job of a media whose first
    job is long done. `sparse` is not applied either (IndexManager.create_index ignores it
    for a key list), but SQLite's UNIQUE lets any number of NULLs in, so documents without
    the field never collide; nor do explicit nulls, which do in MongoDB's sparse unique
    index. Shape instead: a field only active records carry (`active_slot`,
    `primary_slot`) under a unique sparse index, `$unset` (never set to null) when the
    record stops being active."""
    jobs = await fresh(db, [], [])
    await jobs.create_index(
        [("media_id", 1)],
        unique=True,
        partialFilterExpression={"state": {"$in": ["queued", "running"]}},
        name="one_active_job",
    )
    [index] = [i for i in await (await jobs.list_indexes()).to_list() if i["name"] != "_id_"]
    assert "partialFilterExpression" not in index
    await jobs.insert_one({"_id": "old", "media_id": "m1", "state": "done"})
    with pytest.raises(DuplicateKeyError):  # MongoDB accepts it: "done" is outside the filter
        await jobs.insert_one({"_id": "new", "media_id": "m1", "state": "queued"})

    slots = await fresh(db, [], [])
    await slots.create_index([("active_slot", 1)], unique=True, sparse=True)
    await slots.insert_one({"_id": "j1", "media_id": "m1", "active_slot": "m1"})
    with pytest.raises(DuplicateKeyError):
        await slots.insert_one({"_id": "j2", "media_id": "m1", "active_slot": "m1"})
    await slots.update_one({"_id": "j1"}, {"$unset": {"active_slot": ""}})  # j1 is done
    await slots.insert_one({"_id": "j2", "media_id": "m1", "active_slot": "m1"})
    await slots.insert_many([{"_id": "a"}, {"_id": "b"}])  # missing: never collide
    await slots.insert_many([{"_id": "c", "active_slot": None}, {"_id": "d", "active_slot": None}])


async def test_index_names_are_ignored_and_drop_by_name_drops_nothing(
    db: AsyncDatabase[Doc],
) -> None:
    """neosqlite names every index idx_<collection>_<fields joined by _>
    (IndexManager.create_index, collection/index_manager.py); the name given is echoed by
    createIndexes but not kept, so dropping by that name silently drops nothing. Shape
    instead: mediasvc never drops or looks up an index by name; the names it gives are
    only for MongoDB."""
    collection = await fresh(db, [], [])
    assert await collection.create_index(LIST_ORDER, name="list_order") == "list_order"
    names = set(await collection.index_information())
    sqlite_name = f"idx_{collection.name}_display_order_created_at"
    assert names == {"_id_", sqlite_name}
    await collection.drop_index("list_order")  # MongoDB: dropped; here: no error, no effect
    assert set(await collection.index_information()) == names
    await collection.drop_index(sqlite_name)
    assert set(await collection.index_information()) == {"_id_"}


async def test_descending_keys_are_built_ascending_so_a_mixed_order_sort_is_not_index_served(
    seeded: Seeded,
) -> None:
    """CREATE INDEX gets no ASC/DESC (IndexManager.create_index): listIndexes reports
    `created_at: 1` for a DESCENDING key. Sorts are still right, and a sort whose keys all
    run one way is served by walking the index backwards; a mixed order (display_order up,
    created_at down) sorts the first display_order group in a temporary B-tree (81 ms at
    50k documents against 3 ms). Adding `_id` after an indexed key also needs the B-tree
    (cheap only if the key before it is unique). Shape instead: one ascending `sort_key`
    string that encodes the list order and ends with the _id, sorted in one direction."""
    info = await seeded.media.index_information()
    assert info["idx_media_display_order_created_at"]["key"] == [
        ("display_order", 1),
        ("created_at", 1),
    ]
    page = await seeded.media.find({}).sort(LIST_ORDER).limit(50).to_list()
    expected = sorted(page, key=lambda d: (d["display_order"], -d["created_at"]))
    assert [d["_id"] for d in page] == [d["_id"] for d in expected]
    newest = await seeded.media.find({}).sort("sort_key", DESCENDING).limit(3).to_list()
    assert newest[0]["sort_key"] > newest[1]["sort_key"] > newest[2]["sort_key"]

    with twin("media", MEDIA_INDEXES) as copy:
        for direction in (ASCENDING, DESCENDING):
            plan = copy.find_plan({}, [("sort_key", direction)])
            assert plan == ["SCAN media USING INDEX idx_media_sort_key"]
            owner = {"uploaded_by": eq(seeded.user)}
            plan = copy.find_plan(owner, [("sort_key", direction)])
            assert plan == ["SEARCH media USING INDEX idx_media_uploaded_by_sort_key (<expr>=?)"]
        mixed = copy.find_plan({}, LIST_ORDER)
        assert "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY" in mixed
        tie_broken = copy.find_plan({}, [("sort_key", 1), ("_id", 1)])
        assert "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY" in tie_broken


async def test_hint_is_ignored(seeded: Seeded) -> None:
    """The cursor keeps a hint and never uses it (neosqlite Cursor.hint, collection/cursor.py):
    a hint naming no index is not even an error (MongoDB: BadValue). Shape instead: never
    steer with hint; give each query shape one index that wins by itself (see the planner
    tests)."""
    found = (
        await seeded.media.find({"uploaded_by": eq(seeded.user)}).hint("no_such_index").to_list()
    )
    assert found


# ---- null, missing and arrays


async def test_ne_on_a_missing_field_counts_differently_in_find_and_in_count(
    db: AsyncDatabase[Doc],
) -> None:
    """find translates `$ne` to `IS NOT ?`, which keeps missing and null fields, as MongoDB
    does (_sql_query_builder.py `_build_operator_clause`); count, updates and findAndModify
    translate it to `!= ?`, which drops them (sql_translator_unified.py
    `translate_operator`). So a page and its total disagree, and an update guarded by
    `$ne` skips documents MongoDB would change. count_documents (an aggregation) agrees
    with find. Shape instead: every field a query filters on is present with a non-null
    value in every record, so `$ne` never meets a missing field."""
    collection = await fresh(
        db, [{"_id": 1, "f": "x"}, {"_id": 2, "f": "y"}, {"_id": 3}, {"_id": 4, "f": None}], []
    )
    query = {"f": {"$ne": "x"}}
    assert await ids(collection, query) == [2, 3, 4]  # MongoDB: [2, 3, 4]
    assert await count(collection, query) == 1
    assert await collection.count_documents(query) == 3
    assert (await collection.update_many(query, {"$set": {"seen": True}})).matched_count == 1
    assert await collection.find_one_and_update({"_id": 3, **query}, {"$set": {"g": 1}}) is None

    complete = await fresh(db, [{"_id": 1, "f": "x"}, {"_id": 2, "f": "y"}], [])
    assert await ids(complete, query) == [2]
    assert await count(complete, query) == 1


async def test_null_and_missing_are_the_same_to_sql(db: AsyncDatabase[Doc]) -> None:
    """json_extract gives SQL NULL for a JSON null and for a missing field alike, so the SQL
    paths cannot tell them apart: `$exists: false` matches nulls, `$exists: true` misses
    them and `$ne: null` keeps missing fields (MongoDB: 3 / 1,2,4 / 1,2). Shape instead:
    fields are unset rather than set to null when a query has to tell "not there"."""
    collection = await fresh(
        db, [{"_id": 1, "f": "x"}, {"_id": 2, "f": "y"}, {"_id": 3}, {"_id": 4, "f": None}], []
    )
    for query, found in (
        ({"f": {"$exists": False}}, [3, 4]),
        ({"f": {"$exists": True}}, [1, 2]),
        ({"f": {"$ne": None}}, [1, 2, 3]),
        ({"f": eq(None)}, [3, 4]),  # right: null matches null and missing
    ):
        assert await ids(collection, query) == found, query
        assert await count(collection, query) == len(found), query


async def test_equality_on_an_indexed_array_field_misses_arrays_and_in_is_never_index_served(
    db: AsyncDatabase[Doc],
) -> None:
    """There are no multikey indexes: an index on an array field indexes the whole array as
    one JSON value. find drops the array-containment arm of `{f: v}` when an index name
    ends in `_f` (`_build_field_clause`, `_field_has_index`), so it then misses documents
    whose array holds v, while count keeps the arm and finds them; `$eq` never looks into
    arrays; `$in` matches elements but through a per-row json_each subquery, never the
    index; an array value as the equality fails to bind. Shape instead: queries filter on
    scalar fields only; arrays (variants) are never a query condition."""
    tags = await fresh(
        db,
        [{"_id": 1, "tags": ["x", "y"]}, {"_id": 2, "tags": "x"}, {"_id": 3, "tags": ["z"]}],
        [[("tags", 1)]],
    )
    assert await ids(tags, {"tags": "x"}) == [2]  # MongoDB: [1, 2]
    assert await count(tags, {"tags": "x"}) == 2
    assert await ids(tags, {"tags": eq("x")}) == [2]  # MongoDB: [1, 2]
    assert await count(tags, {"tags": eq("x")}) == 1
    assert await ids(tags, {"tags": {"$in": ["x"]}}) == [1, 2]
    plan = await find_plan(tags, {"tags": {"$in": ["x"]}})
    assert full_scan(plan, tags.name) and "CORRELATED SCALAR SUBQUERY 1" in plan
    with pytest.raises(OperationFailure, match="type 'list' is not supported"):
        await tags.find({"tags": ["x", "y"]}).to_list()


# ---- equality


async def test_implicit_equality_gets_an_array_arm_that_disables_the_index(seeded: Seeded) -> None:
    """`{f: v}` becomes `(f = ? OR EXISTS (json_each ... = ?))` so it also matches arrays
    holding v; SQLite cannot search an index for that OR, so the table is scanned. find
    leaves the arm out only if some index's (SQLite) name ends in `_f`, i.e. f is the last
    key of an index (`_field_has_index`); count, updates and findAndModify always add it
    (`build_where_clause`). `{f: {"$eq": v}}` never gets the arm and is index-served.
    Shape instead: every condition is written `{f: {"$eq": v}}`, in reads, counts,
    claims and updates alike (`_id` is a column and needs no `$eq`)."""
    media = seeded.media
    implicit = await find_plan(media, {"uploaded_by": seeded.user})
    assert full_scan(implicit, "media") and "CORRELATED SCALAR SUBQUERY 1" in implicit
    explicit = await find_plan(media, {"uploaded_by": eq(seeded.user)})
    assert explicit == ["SEARCH media USING INDEX idx_media_uploaded_by_sort_key (<expr>=?)"]
    last_key = await find_plan(media, {"sort_key": "x"})  # idx_media_sort_key ends in _sort_key
    assert last_key == ["SEARCH media USING INDEX idx_media_sort_key (<expr>=?)"]
    assert await find_plan(media, {"_id": "m0000001"}) == [
        "SEARCH media USING INDEX idx_media_id (_id=?)"
    ]
    with twin("media", MEDIA_INDEXES) as copy:
        assert full_scan(copy.count_plan({"sort_key": "x"}), "media")
        assert uses(copy.count_plan({"sort_key": eq("x")}), "idx_media_sort_key")
        assert full_scan(copy.count_plan({"uploaded_by": seeded.user}), "media")
        assert uses(
            copy.count_plan({"uploaded_by": eq(seeded.user)}), "idx_media_uploaded_by_sort_key"
        )


async def test_a_claim_with_sort_is_index_served_only_with_eq(db: AsyncDatabase[Doc]) -> None:
    """findAndModify builds `SELECT ... WHERE <translate_match> ORDER BY ... LIMIT 1`
    (`find_one_and_update`, collection/query_engine/find_operations.py), so the oldest
    queued job is found through the claim index only when its conditions are `$eq`; the
    implicit form scans every job and sorts them. Shape instead: claims filter with
    `$eq` on the leading keys of the claim index and sort by its next key."""
    jobs = await fresh(
        db,
        [
            {
                "_id": f"j{n}",
                "state": "queued" if n % 50 == 0 else "done",
                "suspect": False,
                "created_at": n,
            }
            for n in range(200)
        ],
        [CLAIM_ORDER],
    )
    claim = {"$set": {"state": "running"}}
    oldest = await jobs.find_one_and_update(
        {"state": eq("queued"), "suspect": eq(False)}, claim, sort=[("created_at", 1)]
    )
    assert oldest is not None and oldest["_id"] == "j0"
    with twin("jobs", [CLAIM_ORDER]) as copy:

        def plan(query: Doc) -> list[str]:
            return copy.plan_of(
                lambda c: c.find_one_and_update(query, claim, sort=[("created_at", 1)])
            )

        explicit = plan({"state": eq("queued"), "suspect": eq(False)})
        assert explicit == [
            "SEARCH jobs USING INDEX idx_jobs_state_suspect_created_at (<expr>=? AND <expr>=?)"
        ]
        implicit = plan({"state": "queued", "suspect": False})
        assert full_scan(implicit, "jobs") and "USE TEMP B-TREE FOR ORDER BY" in implicit


async def test_find_one_and_update_returns_none_instead_of_a_write_error(
    db: AsyncDatabase[Doc],
) -> None:
    """nx_27017 handler.py findAndModify turns any exception into `value: null`, so a
    unique-index violation looks like "no such document" and nothing is written.
    Shape instead: a write that can break a unique index (making a media primary, queueing
    a job) is an update_one or insert_one, which report DuplicateKeyError."""
    slots = await fresh(db, [{"_id": 1, "slot": "a"}, {"_id": 2}], [])
    await slots.create_index([("slot", 1)], unique=True, sparse=True)
    assert await slots.find_one_and_update({"_id": 2}, {"$set": {"slot": "a"}}) is None
    assert await slots.find_one({"_id": 2}) == {"_id": 2}
    with pytest.raises(DuplicateKeyError):
        await slots.update_one({"_id": 2}, {"$set": {"slot": "a"}})


# ---- logical operators


async def test_top_level_and_or_nor_make_find_filter_the_whole_table_in_python(
    seeded: Seeded,
) -> None:
    """`_build_simple_where_clause` gives up on any top-level `$and`, `$or`, `$nor` (and
    `$not`), and the cursor then reads every row and filters it in Python: the statement
    has no WHERE at all (1.3 s for a page of an `$or` at 50k documents against 3 ms).
    Shape instead: a list over several owners runs one indexed `$eq` find per arm, each
    from the page's sort_key on, and merges them by sort_key."""
    media = seeded.media
    arms = seeded.owner_arms()
    for query in ({"$or": arms}, {"$and": arms[:1]}, {"$nor": arms[:1]}):
        assert await find_plan(media, query) == ["SCAN media"], query

    def page(query: Doc) -> Callable[[], Awaitable[object]]:
        return lambda: media.find(query).sort("sort_key", 1).limit(21).to_list()

    await assert_slower(page({"$or": arms}), page(arms[0]))


async def test_count_of_or_is_index_served_only_while_every_arm_translates(seeded: Seeded) -> None:
    """The count translator handles `$or` in SQL and SQLite searches one index per arm
    (MULTI-INDEX OR); an arm with `$regex` or `$in` makes the whole count fall back to the
    Python-filtered find (2.4 s at 50k documents against 1.5 ms). Shape instead: counts of
    several owners are an `$or` of `$eq` arms; a search is counted as the union of the
    `_id`s of one indexed find per arm (33 ms)."""
    media = seeded.media
    arms = seeded.owner_arms()
    with twin("media", MEDIA_INDEXES) as copy:
        plan = copy.count_plan({"$or": arms})
        by_entity = "SEARCH media USING INDEX idx_media_entity_type_entity_id_sort_key"
        assert plan[0] == "MULTI-INDEX OR" and not full_scan(plan, "media")
        assert searches(plan) == [
            "SEARCH media USING INDEX idx_media_uploaded_by_sort_key (<expr>=?)",
            f"{by_entity} (<expr>=? AND <expr>=?)",
            f"{by_entity} (<expr>=? AND <expr>=?)",
        ]
        regex = {"$or": [{**arm, "search_text": {"$regex": "photo_1"}} for arm in arms]}
        [fallback] = copy.statements(lambda c: c.count_documents(regex))
        assert fallback.startswith("SELECT id, _id, data") and "WHERE" not in fallback
    await assert_slower(lambda: count(media, regex), lambda: count(media, {"$or": arms}))
    in_arms = {"$or": [{**arm, "media_type": {"$in": ["image"]}} for arm in arms]}
    await assert_slower(lambda: count(media, in_arms), lambda: count(media, {"$or": arms}))


# ---- counting


async def test_count_documents_runs_in_python_and_the_count_command_in_sql(
    embedded: Embedded, seeded: Seeded
) -> None:
    """pymongo's count_documents sends `$match` + `$group {_id: 1}`; neosqlite's SQL tiers
    refuse a constant group key and run the pipeline in Python over every matching
    document, saying so in the server log (temporary_table_aggregation/operators_group.py). It
    takes 1.7 s at 50k documents even for `{}`, where the `count` command (one
    `SELECT COUNT(id)`, query_methods.py) takes 1 ms. Shape instead: the repository counts
    with the `count` command (estimated_document_count for a whole collection)."""
    media = seeded.media
    owner = {"uploaded_by": eq(seeded.user)}
    offset = embedded.log_size()
    assert await count(media, owner) == await media.count_documents(owner)
    assert GROUP_FALLBACK in embedded.log_since(offset)
    offset = embedded.log_size()
    assert await count(media, owner) > 0
    assert await media.estimated_document_count() == SEEDED
    assert GROUP_FALLBACK not in embedded.log_since(offset)
    await assert_slower(lambda: media.count_documents(owner), lambda: count(media, owner))


async def test_in_and_regex_are_evaluated_per_row_and_make_count_load_documents(
    seeded: Seeded,
) -> None:
    """find turns `$in`/`$nin` into a json_each subquery per row, which no index serves,
    and `$regex` into SQLite REGEXP, a Python call per row; with an `$eq` on the leading
    index keys they only filter the rows that index yields. The count translator knows
    neither, so such a count runs the find and decodes every matching document (192 ms
    for one `$in` value at 50k documents against 2 ms for `$eq`). `$in` on `_id` is a
    column lookup. Shape instead: `$eq` conditions select through an index; `$in` (as an
    `$or` of `$eq` arms when counted) and `$regex` only narrow what the index found."""
    media = seeded.media
    alone = await find_plan(media, {"media_type": {"$in": ["image", "video"]}})
    assert full_scan(alone, "media") and "CORRELATED SCALAR SUBQUERY 1" in alone
    narrowed = await find_plan(
        media, {"uploaded_by": eq(seeded.user), "media_type": {"$in": ["image", "video"]}}
    )
    assert narrowed[0] == "SEARCH media USING INDEX idx_media_uploaded_by_sort_key (<expr>=?)"
    searched = await find_plan(
        media, {"uploaded_by": eq(seeded.user), "search_text": {"$regex": "x"}}
    )
    assert searched == ["SEARCH media USING INDEX idx_media_uploaded_by_sort_key (<expr>=?)"]
    by_id = await find_plan(media, {"_id": {"$in": ["m0000001", "m0000002"]}})
    assert by_id == ["SEARCH media USING INDEX idx_media_id (_id=?)"]
    with twin("media", MEDIA_INDEXES) as copy:
        for residual in ({"$in": ["image"]}, {"$nin": ["image"]}):
            query = {"uploaded_by": eq(seeded.user), "media_type": residual}
            [statement] = copy.statements(lambda c, q=query: c.count_documents(q))
            assert statement.startswith("SELECT id, _id, data"), residual  # documents, not COUNT
        regex = {"uploaded_by": eq(seeded.user), "search_text": {"$regex": "x"}}
        [statement] = copy.statements(lambda c: c.count_documents(regex))
        assert statement.startswith("SELECT id, _id, data") and "REGEXP" in statement
    two_types = {"media_type": {"$in": ["image", "video"]}}
    as_arms = {"$or": [{"media_type": eq("image")}, {"media_type": eq("video")}]}
    assert await count(media, two_types) == await count(media, as_arms)
    await assert_slower(lambda: count(media, two_types), lambda: count(media, as_arms))


async def test_regex_options_make_find_filter_the_whole_table_in_python(seeded: Seeded) -> None:
    """`_build_operator_clause` translates `$regex` but not its sibling `$options`, and one
    untranslated operator sends the whole find (and a count) to the Python scan, indexed
    `$eq` and all: a case-insensitive search page takes 1.4 s at 50k documents. The flag
    written inline, `(?i)` at the start of the pattern (which MongoDB's PCRE takes too),
    stays SQL: 2.9 ms. Shape instead: `{"$regex": "(?i)" + re.escape(text)}`, never
    `$options`."""
    media = seeded.media
    owner = {"uploaded_by": eq(seeded.user)}
    with_options = {**owner, "search_text": {"$regex": "PHOTO_1", "$options": "i"}}
    inline = {**owner, "search_text": {"$regex": "(?i)PHOTO_1"}}
    assert await find_plan(media, with_options) == ["SCAN media"]
    assert uses(await find_plan(media, inline), "idx_media_uploaded_by_sort_key")
    assert await ids(media, inline) == await ids(media, with_options) != []

    def page(query: Doc) -> Callable[[], Awaitable[object]]:
        return lambda: media.find(query).sort("sort_key", 1).limit(21).to_list()

    await assert_slower(page(with_options), page(inline))


# ---- values


async def test_datetimes_set_by_set_read_back_as_strings(db: AsyncDatabase[Doc]) -> None:
    """An inserted datetime comes back a datetime, but `$set` binds it into json_set as a
    parameter (`_build_sql_update_clause`, collection/query_helper/_sql_updates.py), which
    sqlite3's default adapter turns into text: it reads back as
    '2024-01-02 03:04:05.123000', without its zone, and sorts and compares as a string.
    Shape instead: every stored time is an integer of milliseconds since the epoch."""
    moment = datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    collection = await fresh(db, [{"_id": 1, "inserted": moment}], [])
    await collection.update_one({"_id": 1}, {"$set": {"updated": moment}})
    await collection.update_many({"_id": 1}, {"$set": {"many": moment}})
    await collection.find_one_and_update({"_id": 1}, {"$set": {"claimed": moment}})
    stored = await collection.find_one({"_id": 1})
    assert stored is not None
    assert stored["inserted"] == moment.replace(tzinfo=None)
    for field in ("updated", "many", "claimed"):
        assert stored[field] == "2024-01-02 03:04:05.123000", field


# ---- the planner


async def test_planner_breaks_a_tie_between_indexes_by_creation_order(
    db: AsyncDatabase[Doc],
) -> None:
    """With no ANALYZE statistics SQLite rates an equality on one indexed column the same
    for every index (10 rows), so for `uploaded_by = ? AND media_type = ?` with indexes
    (uploaded_by, sort_key) and (media_type, sort_key) the index created last wins, however
    unselective: here the media_type one, which reads a quarter of the table (count: 81 ms
    at 50k documents against 0.9 ms). Shape instead: see the next test."""
    documents = media_documents(400)
    query = {"uploaded_by": eq(documents[0]["uploaded_by"]), "media_type": eq("image")}
    first = await fresh(db, documents, [BY_UPLOADER, BY_MEDIA_TYPE])
    assert uses(await find_plan(first, query), f"idx_{first.name}_media_type_sort_key")
    second = await fresh(db, documents, [BY_MEDIA_TYPE, BY_UPLOADER])
    assert uses(await find_plan(second, query), f"idx_{second.name}_uploaded_by_sort_key")


async def test_an_index_on_the_whole_equality_set_wins_in_find_and_count(
    db: AsyncDatabase[Doc],
) -> None:
    """An index whose leading keys are all the query's equalities wins over the others in
    find and count alike, whatever the creation order. Covering part of the set is not
    enough: a count of (entity_type, entity_id, media_type) picks (media_type, sort_key)
    over (entity_type, entity_id, sort_key), as SQLite's default estimate is 10 rows for
    one equal column and 9 for two; only the find, whose sort the entity index also
    serves, picks the latter. Shape instead: every equality set a list or a count uses is
    the exact leading part of one index, followed by sort_key."""
    documents = media_documents(400)
    user = documents[0]["uploaded_by"]
    query = {"uploaded_by": eq(user), "media_type": eq("image")}
    collection = await fresh(db, documents, [BY_UPLOADER_TYPE, BY_UPLOADER, BY_MEDIA_TYPE])
    plan = await find_plan(collection, query)
    assert uses(plan, f"idx_{collection.name}_uploaded_by_media_type_sort_key")

    entity = {"entity_type": eq("user"), "entity_id": eq(user), "media_type": eq("image")}
    with twin("media", MEDIA_INDEXES) as base:
        assert uses(base.count_plan(query), "idx_media_media_type_sort_key")
        assert uses(base.count_plan(entity), "idx_media_media_type_sort_key")
        assert uses(base.find_plan(entity, BY_KEY), "idx_media_entity_type_entity_id_sort_key")
    for indexes in ([*MEDIA_INDEXES, *BY_ARM_AND_TYPE], [*BY_ARM_AND_TYPE, *MEDIA_INDEXES]):
        with twin("media", indexes) as full:
            for plan in (full.count_plan(query), full.find_plan(query, BY_KEY)):
                assert uses(plan, "idx_media_uploaded_by_media_type_sort_key")
            for plan in (full.count_plan(entity), full.find_plan(entity, BY_KEY)):
                assert uses(plan, "idx_media_entity_type_entity_id_media_type_sort_key")


async def test_an_or_arm_with_an_extra_equality_needs_an_index_on_the_whole_arm() -> None:
    """Counting an owner's images (`$or` of the owner arms, each with media_type) searches
    the media_type index in every arm, reading a quarter of the table per arm (128 ms at
    50k documents); with two arms SQLite even factors the common term out and runs one
    media_type search. With an index per arm on the arm's whole equality set each arm
    searches its own (1.0 ms), but only if the condition is written inside every arm: as
    `$and: [condition, {$or: arms}]` it is one media_type search again. Shape instead: for
    each filter that can join the owner arms, an index (arm keys..., filter key, sort_key)
    per arm, and the filter repeated in each arm of a flat `$or`."""
    arms = [
        {"uploaded_by": eq("u1"), "media_type": eq("image")},
        {"entity_type": eq("user"), "entity_id": eq("u1"), "media_type": eq("image")},
        {"entity_type": eq("service"), "entity_id": eq("s1"), "media_type": eq("image")},
    ]
    by_type = "SEARCH media USING INDEX idx_media_media_type_sort_key (<expr>=?)"
    with twin("media", MEDIA_INDEXES) as base:
        assert searches(base.count_plan({"$or": arms})) == [by_type] * 3
        assert searches(base.count_plan({"$or": arms[:2]})) == [by_type]
    with twin("media", [*MEDIA_INDEXES, *BY_ARM_AND_TYPE]) as full:
        by_entity = (
            "SEARCH media USING INDEX idx_media_entity_type_entity_id_media_type_sort_key"
            " (<expr>=? AND <expr>=? AND <expr>=?)"
        )
        by_uploader = (
            "SEARCH media USING INDEX idx_media_uploaded_by_media_type_sort_key"
            " (<expr>=? AND <expr>=?)"
        )
        assert searches(full.count_plan({"$or": arms})) == [by_uploader, by_entity, by_entity]
        plain_arms = [{k: v for k, v in arm.items() if k != "media_type"} for arm in arms]
        nested = {"$and": [{"media_type": eq("image")}, {"$or": plain_arms}]}
        assert searches(full.count_plan(nested)) == [by_type]


async def test_analyze_lets_the_planner_choose_by_selectivity(embedded: Embedded) -> None:
    """The `analyze` command (neosqlite Connection.command runs ANALYZE; 67 ms at 50k
    documents) writes sqlite_stat1, and the planner then picks the selective index of a
    tie (the count above: 8 ms). It is a snapshot: it must be run again as the data
    changes, an in-memory database loses it on restart, and plans then depend on the data;
    so mediasvc relies on exact indexes (the tests above), not on statistics."""
    database = embedded.client["planner_statistics"]  # ANALYZE covers a whole database
    documents = media_documents(2000)
    collection = await fresh(database, documents, [BY_UPLOADER, BY_MEDIA_TYPE])
    query = {"uploaded_by": eq(documents[0]["uploaded_by"]), "media_type": eq("image")}
    assert uses(await find_plan(collection, query), f"idx_{collection.name}_media_type_sort_key")
    await database.command("analyze")
    assert uses(await find_plan(collection, query), f"idx_{collection.name}_uploaded_by_sort_key")


def _repository_indexes() -> list[Keys]:
    from mediasvc.repository import MEDIA_INDEXES as REPOSITORY_INDEXES

    return [[(key, 1) for key in keys] for keys in REPOSITORY_INDEXES.values()]


def test_a_facet_beside_a_branch_equality_is_a_one_value_range_so_the_branch_index_wins() -> None:
    """The repository's own shapes, made by `mediasvc.listing.plan`, over its own indexes:
    a caller with grants listing its images. Each branch's media_type (and status) is written
    as `{"$gte": v, "$lte": v}`: no tie with the (media_type, sort_key) index that an admin's
    `media_type=` list uses, so every fetch and the count's `$or` arms search the branch's
    index (uploader, entity, entity type), in whatever order the indexes were created."""
    from mediasvc.auth import Principal
    from mediasvc.listing import MediaFilters, MediaQuery, plan

    caller = Principal("u1", entities=frozenset({"service:s1", "practitioner:*"}))
    filters = MediaFilters(media_type="image", status="ready")
    shapes = plan(MediaQuery(filters, "", caller.visibility(), 20))
    branch_indexes = {
        "idx_media_entity_type_entity_id_sort_key",
        "idx_media_uploaded_by_sort_key",
        "idx_media_entity_type_sort_key_search_text",
    }
    for indexes in (_repository_indexes(), _repository_indexes()[::-1]):
        with twin("media", indexes) as repository:
            for branch in shapes.fetch:
                used = searches(repository.find_plan(branch, BY_KEY))
                assert len(used) == 1 and any(f" {name} " in used[0] for name in branch_indexes)
            (counted,) = shapes.count
            arms = searches(repository.count_plan(counted))
            assert len(arms) == len(counted["$or"])
            assert all(any(f" {name} " in arm for name in branch_indexes) for arm in arms)
            admin = plan(MediaQuery(MediaFilters(media_type="image"), "", None, 20))
            assert uses(repository.count_plan(admin.count[0]), "idx_media_media_type_sort_key")
