"""List pages and counts equal a brute-force filter of the same records, in order, across pages,
by offset and by cursor (forward and back): random records, callers with random grants, random
filters and searches, against the real embedded database through the real driver.

The pools are small on purpose, so examples are full of what breaks list code: the same entity
id under two types, a caller that uploaded into an entity it also holds a grant for, `type:*`
beside a grant of that type, equal display orders and equal creation times (the id decides),
searches that match in one text only, or in different case.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediasvc.auth import Principal
from mediasvc.listing import Cursor, MediaFilters, MediaQuery
from mediasvc.records import MediaRecord, MediaStatus, StorageKey
from tests.support.client import API, Client
from tests.support.database import Database
from tests.support.tokens import Caller

IDS = [str(uuid.UUID(int=n)) for n in (0xA1, 0xB2, 0xC3)]  # subs and entity ids alike
TYPES = ["user", "service", "practitioner"]
MEDIA_TYPES = ["image", "video", "audio", "document"]
STATUSES = [status.value for status in MediaStatus]
TEXTS = ["", "Cat", "cat.JPG", "a.b", "Dog cat", "ÉTÉ", "x_y", "100%"]
ADMIN = Principal(str(uuid.UUID(int=0xAD)), roles=frozenset({"admin"}))
SEARCHES = ["", "cat", "CAT", "a.b", ".", "é", "dog c", "%", "zzz", "jpg"]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(tmp_path_factory.mktemp("listing"), name="listing")
    yield database
    database.close()


@st.composite
def media_records(draw: st.DrawFn) -> list[MediaRecord]:
    count = draw(st.integers(0, 24))
    ids = draw(st.lists(st.uuids(), min_size=count, max_size=count, unique=True))
    return [draw(_record(str(media_id))) for media_id in ids]


@st.composite
def _record(draw: st.DrawFn, media_id: str) -> MediaRecord:
    entity = (draw(st.sampled_from(TYPES)), draw(st.sampled_from(IDS)))
    media = MediaRecord.new(
        entity=entity,
        uploaded_by=draw(st.sampled_from(IDS)),
        kind_media_type=draw(st.sampled_from(MEDIA_TYPES)),
        content_type="application/octet-stream",
        extension="bin",
        filename=draw(st.sampled_from(TEXTS)) + ".bin",
        now=draw(st.integers(1_700_000_000_000, 1_700_000_000_003)),
        title=draw(st.sampled_from(TEXTS)),
        description=draw(st.sampled_from(TEXTS)),
        display_order=draw(st.integers(0, 2)),
        status=MediaStatus(draw(st.sampled_from(STATUSES))),
    )
    key = StorageKey(entity[0], entity[1], media_id, "bin")
    return dataclasses.replace(media, id=media_id, storage_key=str(key))


@st.composite
def principals(draw: st.DrawFn) -> Principal:
    sub = draw(st.sampled_from(IDS))
    if draw(st.integers(0, 5)) == 0:
        return Principal(sub, roles=frozenset({"admin"}))
    grants = st.one_of(
        st.builds(lambda t, i: f"{t}:{i}", st.sampled_from(TYPES), st.sampled_from(IDS)),
        st.builds(lambda t: f"{t}:*", st.sampled_from(TYPES)),
    )
    return Principal(sub, entities=frozenset(draw(st.lists(grants, max_size=4))))


@st.composite
def filters(draw: st.DrawFn) -> MediaFilters:
    def maybe(values: list[str]) -> str | None:
        return draw(st.one_of(st.none(), st.sampled_from(values)))

    return MediaFilters(maybe(TYPES), maybe(IDS), maybe(MEDIA_TYPES), maybe(STATUSES))


def expected(records: list[MediaRecord], principal: Principal, query: MediaQuery) -> list[str]:
    """The ids a list must show, by brute force, in list order."""

    def matches(media: MediaRecord) -> bool:
        if not (principal.is_admin or principal.may_see(media)):
            return False
        for name, value in query.filters.items():
            if getattr(media, name) != value:
                return False
        texts = (media.filename, media.title, media.description)
        return not query.search or any(query.search.lower() in t.lower() for t in texts)

    shown = [media for media in records if matches(media)]
    shown.sort(key=lambda m: (m.display_order, -m.created_at, m.id))
    return [media.id for media in shown]


async def seed(database: Database, records: list[MediaRecord]) -> None:
    repository = database.repository
    await database.db["media"].delete_many({})
    await repository.insert_many(records)
    await repository.recount()


async def pages_by_offset(database: Database, query: MediaQuery, total: int) -> list[str]:
    seen: list[str] = []
    for offset in range(0, total + query.limit, query.limit):
        page = await database.repository.list_media(dataclasses.replace(query, offset=offset))
        assert page.count == total
        assert page.has_more == (offset + query.limit < total)
        seen += [media.id for media in page.items]
    return seen


async def pages_by_cursor(database: Database, query: MediaQuery) -> tuple[list[str], list[str]]:
    """Forward to the end by `next` cursors, then back to the start by `previous` ones."""
    forward: list[MediaRecord] = []
    page = await database.repository.list_media(query)
    forward += page.items
    while page.has_more:
        cursor = Cursor(page.items[-1].sort_key)
        page = await database.repository.list_media(dataclasses.replace(query, cursor=cursor))
        forward += page.items
    backward: list[MediaRecord] = list(page.items)
    while page.items:
        cursor = Cursor(page.items[0].sort_key, before=True)
        page = await database.repository.list_media(dataclasses.replace(query, cursor=cursor))
        backward = page.items + backward
        if not page.has_more:
            break
    return [m.id for m in forward], [m.id for m in backward]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    records=media_records(),
    principal=principals(),
    chosen=filters(),
    search=st.sampled_from(SEARCHES),
    limit=st.integers(1, 5),
)
def test_pages_and_counts_equal_a_brute_force_filter(
    database: Database,
    records: list[MediaRecord],
    principal: Principal,
    chosen: MediaFilters,
    search: str,
    limit: int,
) -> None:
    database.run(seed(database, records))
    query = MediaQuery(chosen, search, principal.visibility(), limit)
    want = expected(records, principal, query)

    assert database.run(pages_by_offset(database, query, len(want))) == want
    forward, backward = database.run(pages_by_cursor(database, query))
    assert forward == want
    assert backward == want


def test_the_unfiltered_admin_count_is_the_maintained_total(database: Database) -> None:
    records = database.run(_seeded(database, 7))
    admin = MediaQuery(MediaFilters(), "", None, 3)
    assert database.run(database.repository.list_media(admin)).count == len(records)
    database.run(database.repository.delete(records[0].id))
    assert database.run(database.repository.list_media(admin)).count == len(records) - 1


def test_totals_follow_inserts_and_deletes_and_serve_the_counts(database: Database) -> None:
    """The maintained totals (all, per entity type, per media type) move with every insert
    and delete, with no recount: a caller with a `type:*` grant, an admin's media type list
    and a whole granted type are counted from them, and equal a brute-force count."""
    repository = database.repository
    types = [*TYPES, "practice-group_2"]  # an identifier may hold `-` and `_`
    records = [
        MediaRecord.new(
            entity=(types[n % 4], IDS[n % 3]),
            uploaded_by=IDS[n % 2],
            kind_media_type=MEDIA_TYPES[n % 3],
            content_type="application/octet-stream",
            extension="bin",
            filename=f"{n}.bin",
            now=1_700_000_000_000 + n,
        )
        for n in range(14)
    ]
    gone = {records[3].id, records[9].id}
    kept = [media for media in records if media.id not in gone]

    async def write() -> None:
        await database.db["media"].delete_many({})
        await database.db["counters"].delete_many({})
        await repository.insert(records[0])  # no totals yet: counted
        await repository.insert_many(records[1:9])
        for media in records[9:]:
            await repository.insert(media)
        for media_id in (*gone, str(uuid.uuid4())):
            await repository.delete(media_id)

    database.run(write())
    assert not database.run(repository.totals_drifted())
    counter = database.run(database.db["counters"].find_one({"_id": "media"}))
    assert counter["n"] == len(kept)
    for name, field in (("entity_types", "entity_type"), ("media_types", "media_type")):
        held = {key: n for key, n in counter[name].items() if n}
        assert held == Counter(getattr(media, field) for media in kept)

    grantee = Principal(IDS[0], entities=frozenset({"practitioner:*", f"service:{IDS[1]}"}))
    queries = [
        (grantee, MediaQuery(MediaFilters(), "", grantee.visibility(), 3)),
        (grantee, MediaQuery(MediaFilters("practitioner"), "", grantee.visibility(), 3)),
        (ADMIN, MediaQuery(MediaFilters(media_type="video"), "", None, 3)),
        (ADMIN, MediaQuery(MediaFilters("practice-group_2"), "", None, 3)),
        (ADMIN, MediaQuery(MediaFilters(), "", None, 3)),
    ]
    for principal, query in queries:
        want = expected(kept, principal, query)
        page = database.run(repository.list_media(query))
        assert page.count == len(want) and [m.id for m in page.items] == want[:3]


def test_drifted_totals_are_recounted_by_migrate(database: Database) -> None:
    """What a process that died between a write and the move of its totals leaves is found
    at the next start-up (`migrate`) and recounted."""
    records = database.run(_seeded(database, 5))
    counters = database.db["counters"]
    for drift in ({"n": 4}, {"entity_types.service": 7}, {"media_types": {}}):
        database.run(counters.update_one({"_id": "media"}, {"$set": drift}))
        assert database.run(database.repository.totals_drifted())
        database.run(database.repository.migrate())
        assert not database.run(database.repository.totals_drifted())
        counter = database.run(counters.find_one({"_id": "media"}))
        assert counter["n"] == len(records) and counter["entity_types"] == {"service": 5}


async def _seeded(database: Database, count: int) -> list[MediaRecord]:
    records = [
        MediaRecord.new(
            entity=("service", IDS[0]),
            uploaded_by=IDS[1],
            kind_media_type="image",
            content_type="image/png",
            extension="png",
            filename=f"{n}.png",
            now=1_700_000_000_000 + n,
        )
        for n in range(count)
    ]
    await seed(database, records)
    return records


async def test_links_carry_a_cursor_unless_the_client_paged_by_offset(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    made = [
        (await client.upload(user.token, f"{n}.jpg", samples["jpg"], user.entity)).json["id"]
        for n in range(5)
    ]
    newest_first = made[::-1]
    first = (await client.request("GET", f"{API}/?limit=2", token=user.token)).json
    assert first["count"] == 5 and first["previous"] is None
    assert "cursor" in parse_qs(urlsplit(first["next"]).query)
    seen, page = [m["id"] for m in first["results"]], first
    while page["next"]:
        page = (await client.request("GET", page["next"], token=user.token)).json
        assert page["count"] == 5
        seen += [m["id"] for m in page["results"]]
    assert seen == newest_first
    back = (await client.request("GET", page["previous"], token=user.token)).json
    assert [m["id"] for m in back["results"]] == newest_first[2:4]

    by_offset = (await client.request("GET", f"{API}/?limit=2&offset=0", token=user.token)).json
    assert parse_qs(urlsplit(by_offset["next"]).query)["offset"] == ["2"]


@pytest.mark.parametrize("cursor", ["x", "YWJj", "%C3%A9", "a" * 300])
async def test_a_cursor_not_made_by_the_service_is_400(
    client: Client, user: Caller, cursor: str
) -> None:
    response = await client.request("GET", f"{API}/?cursor={cursor}", token=user.token)
    assert response.status == 400 and response.json == {"error": "cursor is not valid"}


async def test_a_search_with_control_characters_is_400(client: Client, user: Caller) -> None:
    response = await client.request("GET", f"{API}/?search=a%0Ab", token=user.token)
    assert response.status == 400
    assert response.json == {"error": "search must not contain control characters"}
