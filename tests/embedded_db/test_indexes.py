"""Where the embedded database differs from MongoDB in its indexes and its planner: partial,
named and descending indexes, hints, how SQLite picks between indexes, and which index each
of mediasvc's own list shapes searches. How these tests read plans: tests/embedded_db/shapes.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tests.embedded_db.shapes import (
    BY_ARM_AND_TYPE,
    BY_KEY,
    BY_MEDIA_TYPE,
    BY_UPLOADER,
    BY_UPLOADER_TYPE,
    LIST_ORDER,
    MEDIA_INDEXES,
    Doc,
    Embedded,
    Keys,
    Seeded,
    eq,
    find_plan,
    fresh,
    media_documents,
    searches,
    twin,
    uses,
)

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


CONTENT_INDEX = "sha256_file_size_entity_type_entity_id_created_at"


def test_a_content_lookup_searches_the_content_index_in_its_order() -> None:
    """The repository's deduplication shape (`content_query`: the entity, sha256 and size as
    `$eq`, the usable statuses as `$in`), sorted by `created_at` and limited to one, over the
    repository's own indexes in either creation order: one search of `by_content` on its four
    equalities, read in its order (no temporary B-tree); the `$in`, which no index serves on
    this server, only narrows what the search found. A check asks this once per file. (The
    index is led by the content, not the entity: it ties with no list branch's index, so the
    facet test above holds with it.)"""
    from mediasvc.repository import content_query

    query = content_query({"entity_type": eq("user"), "entity_id": eq("u1")}, "a" * 64, 1234)
    for indexes in (_repository_indexes(), _repository_indexes()[::-1]):
        with twin("media", indexes) as repository:
            plan = repository.find_plan(query, [("created_at", 1)], limit=1)
            (used,) = searches(plan)
            assert used == (
                f"SEARCH media USING INDEX idx_media_{CONTENT_INDEX} "
                "(<expr>=? AND <expr>=? AND <expr>=? AND <expr>=?)"
            )
            assert not any("B-TREE" in step for step in plan), plan


async def test_the_server_plans_a_content_lookup_on_the_content_index(
    db: AsyncDatabase[Doc],
) -> None:
    """The same, as the running server explains it over seeded records with every index of
    the repository."""
    from mediasvc.repository import content_query

    documents = media_documents(500)
    for number, doc in enumerate(documents):
        doc.update(sha256=f"{number:064x}", file_size=1000)
    collection = await fresh(db, documents, _repository_indexes())
    wanted = documents[7]
    entity = {"entity_type": eq(wanted["entity_type"]), "entity_id": eq(wanted["entity_id"])}
    query = content_query(entity, wanted["sha256"], 1000)
    assert uses(await find_plan(collection, query), f"idx_{collection.name}_{CONTENT_INDEX}")
    found = await collection.find(query).sort("created_at", ASCENDING).limit(1).to_list()
    assert [doc["_id"] for doc in found] == [wanted["_id"]]


def test_idempotency_keys_are_reached_by_id_and_swept_by_their_expiry() -> None:
    """Every statement the idempotency keys cost searches an index: `_id` (with the claim
    only narrowing) for a claim, its renewal, its answer and its release; the expiry index
    for the sweep's `$lt`, which translates (unlike `$in`) for a delete."""
    from mediasvc.idempotency_records import COLLECTION, EXPIRY_INDEX, expired_before, held_by

    mine = held_by("k1", "c1")
    operations = [
        lambda c: c.find_one({"_id": eq("k1")}),
        lambda c: c.update_one(mine, {"$set": {"expires_at": 5}}),
        lambda c: c.update_one({**mine, "state": eq("running")}, {"$set": {"expires_at": 5}}),
        lambda c: c.delete_one(mine),
        lambda c: c.delete_many(expired_before(5)),
    ]
    with twin(COLLECTION, [[(key, 1) for key in EXPIRY_INDEX]]) as keys:
        for operation in operations:
            run = keys.statements(operation, kinds=("SELECT", "DELETE", "UPDATE"))
            data = [sql for sql in run if "sqlite_" not in sql and "pragma_" not in sql]
            assert data, "the operation ran no statement"
            for sql in data:
                plan = keys.plan(sql)
                assert searches(plan) and not any(s.startswith("SCAN") for s in plan), (sql, plan)
        (sweep,) = [
            sql for sql in keys.statements(operations[-1], kinds=("DELETE",)) if COLLECTION in sql
        ]
        assert uses(keys.plan(sweep), f"idx_{COLLECTION}_expires_at")


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
        "idx_media_entity_type_entity_id_sort_key_search_text",
        "idx_media_uploaded_by_sort_key_search_text",
        "idx_media_entity_type_sort_key_search_text",
    }
    for indexes in (_repository_indexes(), _repository_indexes()[::-1]):
        with twin("media", indexes) as repository:
            for branch in shapes.fetch:
                used = searches(repository.find_plan(branch, BY_KEY))
                assert len(used) == 1 and any(f" {name} " in used[0] for name in branch_indexes)
            (counted,) = shapes.count.add
            arms = searches(repository.count_plan(counted))
            assert len(arms) == len(counted["$or"])
            assert all(any(f" {name} " in arm for name in branch_indexes) for arm in arms)
            admin = plan(MediaQuery(MediaFilters(media_type="image"), "", None, 20))
            assert admin.count.totals == (("media_types", "image"),)  # a maintained total
            (fetched,) = admin.fetch
            assert uses(repository.find_plan(fetched, BY_KEY), "idx_media_media_type_sort_key")


def test_an_unfiltered_caller_is_counted_from_totals_and_one_index_served_or() -> None:
    """A caller with a `type:*` grant and no filter: the granted type is a maintained total,
    the rest one `$or` whose arms each search an index. The caller's uploads outside the
    granted types are ranges around them, not a `$nin` (which no index serves, and which
    sends the whole `$or` count to Python: 16 s at 200,000 records)."""
    from mediasvc.auth import Principal
    from mediasvc.listing import MediaFilters, MediaQuery, plan

    caller = Principal("u1", entities=frozenset({"service:s1", "practitioner:*", "user:*"}))
    counted = plan(MediaQuery(MediaFilters(), "", caller.visibility(), 20)).count
    assert counted.totals == (("entity_types", "practitioner"), ("entity_types", "user"))
    (where,) = counted.add
    assert "$nin" not in repr(where)
    with twin("media", _repository_indexes()) as repository:
        arms = searches(repository.count_plan(where))
        assert len(arms) == len(where["$or"]) == 4  # the entity, three ranges of uploads


def test_the_webhook_queries_search_their_indexes() -> None:
    """The relay's, the sender's and the delivery list's own queries over their collections'
    own indexes: media with events by `outbox_at` (a range and its sort), the oldest due
    delivery claimed by (state, next_attempt_at), an endpoint's deliveries newest first by
    (endpoint_id, list_key) read backwards, removal events by (state, due_at). None sorts
    in a temporary B-tree."""
    from pymongo import ReturnDocument

    claim_sort = [("next_attempt_at", ASCENDING)]
    shapes: list[tuple[str, list[Keys], Any, str]] = [
        (
            "media",
            _repository_indexes(),
            lambda c: list(c.find({"outbox_at": {"$gte": 0}}).sort("outbox_at", 1).limit(100)),
            "idx_media_outbox_at",
        ),
        (
            "webhook_deliveries",
            [[("state", 1), ("next_attempt_at", 1)], [("endpoint_id", 1), ("list_key", 1)]],
            lambda c: c.find_one_and_update(
                {"state": eq("pending"), "next_attempt_at": {"$lte": 10**13}},
                {"$set": {"lease": "x"}},
                sort=claim_sort,
                return_document=ReturnDocument.AFTER,
            ),
            "idx_webhook_deliveries_state_next_attempt_at",
        ),
        (
            "webhook_deliveries",
            [[("state", 1), ("next_attempt_at", 1)], [("endpoint_id", 1), ("list_key", 1)]],
            lambda c: list(
                c.find({"endpoint_id": eq("w1"), "list_key": {"$lt": "9"}})
                .sort("list_key", DESCENDING)
                .limit(21)
            ),
            "idx_webhook_deliveries_endpoint_id_list_key",
        ),
        (
            "webhook_events",
            [[("state", 1), ("due_at", 1)]],
            lambda c: list(
                c.find({"state": eq("ready"), "due_at": {"$lte": 10**13}}).sort("due_at", 1)
            ),
            "idx_webhook_events_state_due_at",
        ),
    ]
    for name, indexes, operation, index in shapes:
        with twin(name, indexes) as copy:
            plan = copy.plan_of(operation)
            assert uses(plan, index), (index, plan)
            assert not any("TEMP B-TREE" in step for step in plan), plan
