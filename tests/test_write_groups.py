"""Grouped writes (mediasvc/write_groups.py): concurrent uploads share their round trips to the
database, and each still gets its own outcome: acknowledged, a duplicate of its own, or the
database's failure. On the real embedded database, through the real driver and repository."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from mediasvc.app import Service, start_service
from mediasvc.embedded_db import EmbeddedMongo
from mediasvc.errors import Unavailable
from mediasvc.pipeline.jobs import new_job
from mediasvc.records import MediaRecord, MediaStatus, now_ms
from mediasvc.repository import MEDIA_TOTAL, JobActive, MongoMediaRepository
from mediasvc.write_groups import inserts_into
from tests.support.client import API, Client
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token

Doc = dict[str, Any]
BURST = 40


@dataclass
class Commands(monitoring.CommandListener):
    """The commands the driver sent, by name and collection."""

    sent: Counter[tuple[str, str]] = field(default_factory=Counter)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.sent[(event.command_name, target if isinstance(target, str) else "")] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Only the starts are counted."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Only the starts are counted."""


@dataclass
class Database:
    """A running embedded database, a repository on it and the commands sent to it."""

    server: EmbeddedMongo
    client: AsyncMongoClient[Doc]
    repository: MongoMediaRepository
    commands: Commands

    def __post_init__(self) -> None:
        self.db = self.client["mediasvc"]


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    server = EmbeddedMongo(tmp_path, in_memory=True, start_timeout=20)
    uri = await server.start()
    commands = Commands()
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        uri, event_listeners=[commands], serverSelectionTimeoutMS=1000
    )
    repository = MongoMediaRepository(client, "mediasvc")
    await repository.ensure_indexes()
    await repository.migrate()  # as a server starts: the maintained totals exist
    try:
        yield Database(server, client, repository, commands)
    finally:
        await client.close()
        server.stop()


def _media() -> MediaRecord:
    media = MediaRecord.new(
        entity=("user", str(uuid.uuid4())),
        uploaded_by=str(uuid.uuid4()),
        kind_media_type="image",
        content_type="image/jpeg",
        extension="jpg",
        filename="a.jpg",
        now=now_ms(),
    )
    media.status = MediaStatus.PROCESSING
    return media


async def test_concurrent_inserts_share_round_trips_and_all_land(database: Database) -> None:
    uploads = [_media() for _ in range(BURST)]
    jobs = [new_job(media.id, ["thumbnail"], now_ms()) for media in uploads]
    database.commands.sent.clear()
    await asyncio.gather(
        *(database.repository.insert(m, j) for m, j in zip(uploads, jobs, strict=True))
    )
    sent = database.commands.sent
    # The first write of each kind goes alone, the ones that arrived meanwhile together.
    assert sent[("insert", "media")] < BURST / 4, sent
    assert sent[("insert", "jobs")] < BURST / 4, sent
    assert sent[("update", "counters")] < BURST / 4, sent
    db = database.db
    assert await db["media"].count_documents({}) == BURST
    assert {d["media_id"] for d in await db["jobs"].find({}).to_list()} == {m.id for m in uploads}
    assert (await db["counters"].find_one({"_id": MEDIA_TOTAL}) or {})["n"] == BURST


async def test_an_idle_repository_sends_each_write_at_once(database: Database) -> None:
    database.commands.sent.clear()
    media = _media()
    await database.repository.insert(media, new_job(media.id, ["thumbnail"], now_ms()))
    assert await database.repository.get(media.id) is not None
    sent = database.commands.sent
    assert (sent[("insert", "media")], sent[("insert", "jobs")]) == (1, 1)


async def test_a_duplicate_fails_only_its_own_write(database: Database) -> None:
    """Queued together, the second job of one media is refused (the database keeps one
    active job per media) and every other write of the group lands."""
    twice, others = _media(), [_media() for _ in range(5)]
    for media in [twice, *others]:
        await database.repository.insert(media)
    jobs = [new_job(twice.id, ["thumbnail"], now_ms()) for _ in range(3)]
    jobs += [new_job(media.id, ["thumbnail"], now_ms()) for media in others]
    outcomes = await asyncio.gather(
        *(database.repository.insert_job(job) for job in jobs), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 2 and all(isinstance(o, JobActive) for o in refused), outcomes
    stored = await database.db["jobs"].find({}).to_list()
    assert Counter(job["media_id"] for job in stored) == Counter([m.id for m in [twice, *others]])


async def test_counts_of_concurrent_inserts_and_deletes_add_up(database: Database) -> None:
    kept = [_media() for _ in range(12)]
    removed = [_media() for _ in range(8)]
    await asyncio.gather(*(database.repository.insert(m) for m in kept + removed))
    await asyncio.gather(
        *(database.repository.delete(m.id) for m in removed),
        *(database.repository.insert(_media()) for _ in range(5)),
    )
    counter = await database.db["counters"].find_one({"_id": MEDIA_TOTAL})
    assert counter is not None and counter["n"] == 12 + 5
    assert counter["media_types"] == {"image": 12 + 5}
    assert not await database.repository.totals_drifted()


async def test_a_write_cancelled_before_it_is_sent_is_taken_back(database: Database) -> None:
    collection = database.db["grouped"]
    writes = inserts_into(collection)
    first = asyncio.create_task(writes.write({"_id": "first"}))
    while not database.commands.sent[("insert", "grouped")]:  # the first one is in flight
        await asyncio.sleep(0)
    second = asyncio.create_task(writes.write({"_id": "second"}))
    await asyncio.sleep(0)  # queued behind the first
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await writes.write({"_id": "third"})
    assert sorted(d["_id"] for d in await collection.find({}).to_list()) == ["first", "third"]


async def test_a_write_cancelled_in_flight_returns_only_after_its_outcome(
    database: Database,
) -> None:
    """So that what its caller does next, such as undoing it, comes after the write."""
    collection = database.db["grouped"]
    writes = inserts_into(collection)
    write = asyncio.create_task(writes.write({"_id": "sent"}))
    while not database.commands.sent[("insert", "grouped")]:
        await asyncio.sleep(0)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    assert await collection.find_one({"_id": "sent"}) is not None


async def test_every_waiting_write_gets_the_unreachable_database_as_a_503(
    database: Database,
) -> None:
    database.server.stop()
    uploads = [_media() for _ in range(6)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(
                database.repository.insert(m, new_job(m.id, ["thumbnail"], now_ms()))
                for m in uploads
            ),
            return_exceptions=True,
        ),
        timeout=15,
    )
    assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes


@pytest.fixture
async def quiet_service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = service_settings(
        tmp_path / "var", log_level="critical", sweep_interval=0, processing_enabled=False
    )
    service = await start_service(settings)
    yield service
    await service.stop()


async def test_every_201_of_a_burst_has_its_record_its_job_and_its_count(
    quiet_service: Service, samples: dict[str, bytes]
) -> None:
    client = Client(f"http://127.0.0.1:{quiet_service.port}")
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))
    answers = await asyncio.gather(
        *(client.upload(caller.token, f"{n}.jpg", samples["jpg"], caller.entity) for n in range(24))
    )
    assert [answer.status for answer in answers] == [201] * 24
    jobs = quiet_service.context.repository.jobs_collection
    for answer in answers:
        media_id = answer.json["id"]
        got = await client.request("GET", f"{API}/{media_id}/", token=caller.token)
        assert got.status == 200 and got.json["status"] == "processing"
        assert await jobs.count_documents({"media_id": media_id}) == 1
    admin = make_token(str(uuid.uuid4()), roles=["admin"])  # an admin's total is the counter
    listed = await client.request("GET", f"{API}/?limit=1", token=admin)
    assert listed.status == 200 and listed.json["count"] == 24
