"""Where the embedded database differs from MongoDB in what its queries, counts and updates
answer, or how slowly: null and missing fields, arrays, implicit equality, logical operators,
counting, aggregation, upserts and values. How these tests read plans: tests/embedded_db/shapes.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from tests.embedded_db.shapes import (
    CLAIM_ORDER,
    GROUP_FALLBACK,
    MEDIA_INDEXES,
    SEEDED,
    Doc,
    Embedded,
    Seeded,
    assert_slower,
    count,
    eq,
    find_plan,
    fresh,
    full_scan,
    ids,
    searches,
    twin,
    uses,
)

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


async def test_find_and_aggregation_ignore_an_or_beside_an_expr(seeded: Seeded) -> None:
    """A top-level `$or` beside an `$expr` is dropped, by `find` (`_handle_expr_query`
    builds its SQL from the `$expr` alone) and by an aggregation's `$match` then `$count`:
    both answer every record the `$expr` matches (the aggregation took 27 s at 200,000
    records). Shape instead: an `$expr` only ever stands beside flat `$eq` terms (one
    branch); an `$or` is counted by the `count` command and never holds an `$expr`."""
    media = seeded.media
    everything = {"$expr": {"$gte": [{"$indexOfCP": ["$search_text", "photo_1"]}, 0]}}
    arms = {"$or": seeded.owner_arms(), **everything}
    truth: set[str] = set()
    for arm in seeded.owner_arms():
        truth |= set(await ids(media, {**arm, **everything}))
    everywhere = await count(media, everything)
    assert everywhere > len(truth) > 0
    assert len(await ids(media, arms)) == everywhere  # MongoDB: len(truth)
    counted = await (await media.aggregate([{"$match": arms}, {"$count": "n"}])).to_list()
    assert counted == [{"n": everywhere}]


async def test_count_of_an_expr_loads_documents_and_an_aggregation_counts_in_sql(
    seeded: Seeded,
) -> None:
    """The count translator knows no `$expr`, so the `count` command runs the find and
    decodes every matching document; an aggregation's `$match` then `$count` is one SQL
    `COUNT(*)`, after a `COUNT(1)` of the whole collection (its size estimate: a fixed cost).
    Shape instead: a search over a whole entity type (or everything) is counted by the
    aggregation, a search in one entity or uploader by the `count` command."""
    where = {
        "entity_type": eq("service"),
        "$expr": {"$gte": [{"$indexOfCP": ["$search_text", "photo_1"]}, 0]},
    }
    pipeline = [{"$match": where}, {"$count": "n"}]
    with twin("media", MEDIA_INDEXES) as copy:
        [loaded] = copy.statements(lambda c: c.count_documents(where))
        assert loaded.startswith("SELECT id, _id, data")
        traced: list[str] = []
        copy.collection.db.set_trace_callback(traced.append)
        list(copy.collection.aggregate(pipeline))
        copy.collection.db.set_trace_callback(None)
        size, counted = traced  # the second is a WITH, which `statements` leaves out
        assert size == "SELECT COUNT(1) FROM media" and "COUNT(*)" in counted
    answer = await (await seeded.media.aggregate(pipeline)).to_list()
    assert answer == [{"n": await count(seeded.media, where)}]


async def test_distinct_over_an_or_of_index_arms_is_one_indexed_statement(seeded: Seeded) -> None:
    """`distinct` translates its filter with the count translator: an `$or` of `$eq` and
    range arms is one `SELECT DISTINCT` over a MULTI-INDEX OR. mediasvc asks it which of a
    caller's branches have records before a page's last key (its `entity_slot`s), instead
    of a query per branch."""
    arms = [{**arm, "sort_key": {"$lte": "001"}} for arm in seeded.owner_arms()]
    with twin("media", MEDIA_INDEXES) as copy:
        [statement] = copy.statements(lambda c: c.distinct("entity_id", {"$or": arms}))
        assert statement.startswith("SELECT DISTINCT")
        assert len(searches(copy.plan(statement))) == len(arms)
    found = await seeded.media.distinct("entity_id", {"$or": arms})
    assert sorted(found) == sorted(
        {d["entity_id"] for d in await seeded.media.find({"$or": arms}).to_list()}
    )


async def test_an_upsert_stores_a_dotted_inc_as_one_field_name(db: AsyncDatabase[Doc]) -> None:
    """An `$inc` of `a.b` on an existing document moves the nested field, as on MongoDB; an
    upsert that creates the document stores a field named "a.b" instead (MongoDB: a nested
    one). Shape instead: the maintained totals are created by a `$set` of whole maps
    (`recount`) and moved only by `$inc` without upsert."""
    counters = db["dotted_inc"]
    await counters.update_one({"_id": eq("x")}, {"$inc": {"a.b": 1}}, upsert=True)
    assert await counters.find_one({"_id": "x"}) == {"_id": "x", "a.b": 1}
    await counters.update_one({"_id": eq("y")}, {"$set": {"a": {"b": 1}}}, upsert=True)
    await counters.update_one({"_id": eq("y")}, {"$inc": {"a.b": 2, "a.c": 1}})
    assert await counters.find_one({"_id": "y"}) == {"_id": "y", "a": {"b": 3, "c": 1}}


async def test_a_group_by_a_document_of_fields_groups_everything_under_its_literal(
    seeded: Seeded,
) -> None:
    """`$group` with `_id: {t: "$entity_type"}` answers one group whose key is the literal
    `{t: "$entity_type"}`, holding every document (in Python: 40 s at 200,000 records).
    Shape instead: the maintained totals are recounted with `distinct` and one index-served
    `count` per value."""
    pipeline = [{"$group": {"_id": {"t": "$entity_type"}, "n": {"$sum": 1}}}]
    groups = await (await seeded.media.aggregate(pipeline)).to_list()
    assert groups == [{"_id": {"t": "$entity_type"}, "n": SEEDED}]  # MongoDB: user, service
    assert sorted(await seeded.media.distinct("entity_type")) == ["service", "user"]


# ---- arrays that change: the webhook outbox


async def test_pushed_documents_are_stored_as_json_text(db: AsyncDatabase[Doc]) -> None:
    """`$push` (alone or with `$each`, in update_one and findAndModify alike) stores a pushed
    document as its JSON text, and turns the array's other documents into text too; `$pull`
    by a field of such documents then matches every entry (MongoDB: only e1). An inserted or
    `$set` array of documents stays documents, and scalars push and pull exactly. Shape
    instead: the outbox holds scalar entries (`<at>:<type>:<id>`), pushed with `$each` and
    pulled with `$pullAll` of exactly the entries relayed; arrays of documents (variants,
    attempts) are only ever `$set` whole."""
    collection = await fresh(db, [{"_id": "a", "outbox": [{"id": "e1"}]}], [])
    await collection.update_one({"_id": "a"}, {"$push": {"outbox": {"id": "e2"}}})
    stored = await collection.find_one({"_id": "a"})
    assert stored is not None
    assert stored["outbox"] == ['{"id":"e1"}', '{"id":"e2"}']  # MongoDB: two documents
    await collection.update_one({"_id": "a"}, {"$pull": {"outbox": {"id": {"$in": ["e1"]}}}})
    assert (await collection.find_one({"_id": "a"})) == {"_id": "a", "outbox": []}

    await collection.update_one({"_id": "a"}, {"$set": {"outbox": [{"id": "e1"}, {"id": "e2"}]}})
    assert (await collection.find_one({"_id": "a"}))["outbox"] == [{"id": "e1"}, {"id": "e2"}]  # type: ignore[index]
    scalars = await fresh(db, [{"_id": "s", "outbox": ["1:x:e1"]}], [])
    await scalars.find_one_and_update(
        {"_id": "s"}, {"$push": {"outbox": {"$each": ["2:x:e2", "3:x:e3"]}}}
    )
    await scalars.update_one({"_id": "s"}, {"$pullAll": {"outbox": ["1:x:e1", "3:x:e3"]}})
    assert await scalars.find_one({"_id": "s"}) == {"_id": "s", "outbox": ["2:x:e2"]}


async def test_size_guards_an_update_and_an_index_on_the_first_element_does_not(
    db: AsyncDatabase[Doc],
) -> None:
    """`{"outbox": {"$size": 0}}` matches an empty array only, in updates too: the guard of
    the relay's unset. `{"outbox.0": {"$exists": false}}` (MongoDB's other way to say
    "empty") matches a non-empty array here, and an array as an equality does not bind."""
    collection = await fresh(db, [{"_id": "a", "outbox": ["x"]}, {"_id": "b", "outbox": []}], [])
    unset = {"$unset": {"outbox": ""}}
    assert (
        await collection.update_one({"_id": "a", "outbox": {"$size": 0}}, unset)
    ).matched_count == 0
    assert (
        await collection.update_one({"_id": "b", "outbox": {"$size": 0}}, unset)
    ).matched_count == 1
    first_missing = {"_id": "a", "outbox.0": {"$exists": False}}
    assert (await collection.update_one(first_missing, {"$set": {"seen": 1}})).matched_count == 1


async def test_the_outbox_keeps_an_event_pushed_between_the_relays_read_and_its_pull(
    embedded: Embedded,
) -> None:
    """The repository's own writes: the relay reads a record's events, an event is pushed
    meanwhile (a job finished), the relay removes what it read. The new event stays, and so
    does the record's `outbox_at`, so the next pass finds it; once that is relayed too, both
    go and the record is out of the relay's query."""
    from mediasvc.records import MediaRecord, now_ms
    from mediasvc.repository import MongoMediaRepository
    from mediasvc.webhooks.events import EventType, new_event

    repository = MongoMediaRepository(embedded.client, "outbox_shapes")
    await repository.ensure_indexes()
    media = MediaRecord.new(
        entity=("user", "u1"), uploaded_by="u1", kind_media_type="image",
        content_type="image/jpeg", extension="jpg", filename="a.jpg", now=now_ms(),
    )  # fmt: skip
    media.outbox = [new_event(EventType.MEDIA_CREATED).encode()]
    await repository.insert(media)
    [read] = await repository.with_events(10)
    ready = new_event(EventType.MEDIA_READY)
    await repository.update(media.id, {"updated_at": now_ms()}, events=[ready])
    await repository.remove_events({media.id: read.outbox})
    [left] = await repository.with_events(10)
    assert left.outbox == [ready.encode()]
    await repository.remove_events({media.id: left.outbox})
    assert await repository.with_events(10) == []
    raw = await embedded.client["outbox_shapes"]["media"].find_one({"_id": media.id})
    assert raw is not None and "outbox" not in raw and "outbox_at" not in raw


async def test_booleans_set_by_set_read_back_as_integers(db: AsyncDatabase[Doc]) -> None:
    """An inserted `true` comes back `True`; one bound by `$set` (update_one and
    findAndModify alike) comes back `1` (and `false` as `0`); `$eq: true` still matches
    both, as SQLite's JSON true is 1. Shape instead: records read booleans through `bool()`
    (`is_primary`, an endpoint's `enabled`)."""
    collection = await fresh(db, [{"_id": 1, "inserted": True}], [])
    await collection.update_one({"_id": 1}, {"$set": {"updated": True}})
    await collection.find_one_and_update({"_id": 1}, {"$set": {"claimed": False}})
    assert await collection.find_one({"_id": 1}) == {
        "_id": 1, "inserted": True, "updated": 1, "claimed": 0,
    }  # fmt: skip
    for field in ("inserted", "updated"):
        assert await ids(collection, {field: eq(True)}) == [1]
