"""Data folders written before records carried their list fields keep working: a server migrates
them at start-up (logged), `mediasvc migrate` does the same by hand, running it again changes
nothing, and a migration cut short goes on from where it stopped."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import ASCENDING

from mediasvc.records import MediaRecord, derived_fields
from tests.support.client import API
from tests.support.database import Database
from tests.support.process import BIN, Server, service_env

ENTITY = str(uuid.UUID(int=0x5E))
OWNER = str(uuid.UUID(int=0x0A))
OLD_INDEXES = {
    "by_entity": [("entity_type", ASCENDING), ("entity_id", ASCENDING)],
    "by_uploader": [("uploaded_by", ASCENDING)],
    "list_order": [("display_order", ASCENDING), ("created_at", -1)],
}


def old_record(n: int, entity: tuple[str, str] = ("user", OWNER)) -> dict[str, Any]:
    """A media document exactly as the version before wrote it (no derived fields)."""
    media_id = str(uuid.UUID(int=0x1000 + n))
    return {
        "_id": media_id,
        "entity_type": entity[0],
        "entity_id": entity[1],
        "media_type": "image",
        "content_type": "image/jpeg",
        "extension": "jpg",
        "filename": f"Photo {n:04d}.jpg",
        "file_size": 1000 + n,
        "sha256": "0" * 64,
        "storage_key": f"media/{entity[0]}/{entity[1]}/{media_id}.jpg",
        "title": "Harbour" if n % 3 == 0 else "",
        "description": "",
        "alt_text": "",
        "status": "ready",
        "error": None,
        "width": 640,
        "height": 480,
        "is_primary": False,
        "display_order": n % 2,
        "view_count": 0,
        "download_count": 0,
        "uploaded_by": OWNER,
        "variants": [],
        "thumbnail_key": None,
        "job": None,
        "created_at": 1_700_000_000_000 + n * 1000,
        "updated_at": 1_700_000_000_000 + n * 1000,
    }


def write_old_data(data_dir: Path, records: list[dict[str, Any]]) -> None:
    """A file-backed data folder as the version before left it: old records, old indexes."""
    embedded = Database(data_dir, in_memory=False)
    try:
        media = embedded.db["media"]
        for name, keys in OLD_INDEXES.items():
            embedded.run(media.create_index(keys, name=name))
        embedded.run(media.insert_many(records))
    finally:
        embedded.close()


@pytest.fixture
def memory_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path)
    yield database
    database.close()


def test_a_server_migrates_old_records_at_start_up_and_migrate_then_has_nothing_to_do(
    tmp_path: Path,
) -> None:
    records = [old_record(n) for n in range(1200)]  # more than one batch
    write_old_data(tmp_path, records)

    server = Server(tmp_path)
    try:
        token = server.token(OWNER)
        status, page = server.request("GET", f"{API}/?limit=5", token)
        assert status == 200 and page["count"] == 1200
        newest_first_of_order_0 = [old_record(n)["_id"] for n in (1198, 1196, 1194, 1192, 1190)]
        assert [m["id"] for m in page["results"]] == newest_first_of_order_0  # type: ignore[index]
        assert all(m["placeholder"] is None for m in page["results"])  # type: ignore[index]
        status, found = server.request("GET", f"{API}/?search=harbour&limit=1", token)
        assert found["count"] == 400
        status, deep = server.request("GET", str(page["next"]).split(f":{server.port}")[1], token)
        assert status == 200 and len(deep["results"]) == 5  # type: ignore[arg-type]
        # the content index is built at start-up: old records are found by their checksum
        body = {"entity_type": "user", "entity_id": OWNER,
                "files": [{"sha256": "0" * 64, "size": 1000 + 7}]}  # fmt: skip
        status, checked = server.request(
            "POST", f"{API}/check/", token, json.dumps(body).encode(), "application/json"
        )
        assert (status, checked["results"][0]["id"]) == (200, old_record(7)["_id"])  # type: ignore[index]
    finally:
        server.stop()

    run = subprocess.run(
        [str(BIN / "mediasvc"), "migrate", "--data-dir", str(tmp_path)],
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"migrated": 0}


def test_migrate_by_hand_then_again_changes_nothing(tmp_path: Path) -> None:
    write_old_data(tmp_path, [old_record(n) for n in range(30)])
    command = [str(BIN / "mediasvc"), "migrate", "--data-dir", str(tmp_path)]
    first = subprocess.run(command, env=service_env(), capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"migrated": 30}
    again = subprocess.run(command, env=service_env(), capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout) == {"migrated": 0}

    database = Database(tmp_path, in_memory=False)
    try:
        docs = database.run(database.db["media"].find({}).to_list())
        assert all(doc | derived_fields(MediaRecord.from_doc(doc)) == doc for doc in docs)
        indexes = database.run(database.db["media"].index_information()).values()
        keys = {tuple(key for key, _ in index["key"]) for index in indexes}
        old = {tuple(key for key, _ in spec) for spec in OLD_INDEXES.values()}
        assert ("entity_type", "entity_id", "sort_key", "search_text") in keys
        assert ("sha256", "file_size", "entity_type", "entity_id", "created_at") in keys
        assert not keys & old  # what no query uses is dropped
    finally:
        database.close()


def test_a_migration_cut_short_goes_on_from_where_it_stopped(memory_db: Database) -> None:
    records = [old_record(n, ("service", ENTITY)) for n in range(1100)]
    media = memory_db.db["media"]
    memory_db.run(media.insert_many(records))
    ordered = sorted(r["_id"] for r in records)
    # As a migration killed after its first batch left it: that batch done, its place noted.
    for media_id in ordered[:500]:
        doc = next(r for r in records if r["_id"] == media_id)
        fields = derived_fields(MediaRecord.from_doc(doc))
        memory_db.run(media.update_one({"_id": media_id}, {"$set": fields}))
    memory_db.run(memory_db.db["meta"].insert_one({"_id": "media_schema", "after": ordered[499]}))

    assert memory_db.run(memory_db.repository.migrate()) == {"migrated": 600}
    assert memory_db.run(memory_db.repository.migrate()) == {"migrated": 0}
    missing = memory_db.run(media.count_documents({"sort_key": {"$exists": False}}))
    assert missing == 0


def test_version_2_gets_its_totals_counted_and_no_record_rewritten(memory_db: Database) -> None:
    """Records of version 2 already carry their derived fields: going to version 3 only
    counts the totals per entity type and media type."""
    entities = [("service", ENTITY), ("user", OWNER), ("service", OWNER)]
    docs = [MediaRecord.from_doc(old_record(n, entities[n % 3])).to_doc() for n in range(9)]
    media = memory_db.db["media"]
    memory_db.run(media.insert_many(docs))
    memory_db.run(memory_db.db["meta"].insert_one({"_id": "media_schema", "version": 2}))
    memory_db.run(memory_db.db["counters"].insert_one({"_id": "media", "n": 9}))
    before = memory_db.run(media.find({}).sort("_id", ASCENDING).to_list())

    assert memory_db.run(memory_db.repository.migrate()) == {"migrated": 0}
    assert memory_db.run(media.find({}).sort("_id", ASCENDING).to_list()) == before
    counter = memory_db.run(memory_db.db["counters"].find_one({"_id": "media"}))
    assert counter == {
        "_id": "media",
        "n": 9,
        "entity_types": {"service": 6, "user": 3},
        "media_types": {"image": 9},
    }
    meta = memory_db.run(memory_db.db["meta"].find_one({"_id": "media_schema"}))
    assert meta["version"] == 3


def test_a_record_and_its_document_share_no_list_or_dict() -> None:
    """The document an insert sends is a copy: a record changed while its insert waits in a
    write group (an event appended, a variant added) changes nothing already sent, and the
    document reads back as the record it was made from."""
    record = MediaRecord.from_doc(old_record(1))
    record.variants = [{"key": "v/thumb.webp", "size": 10, "meta": {"sizes": [1, 2]}}]
    record.placeholder = {"thumbhash": "AAAA", "color": "#102030"}
    record.job = {"id": "j", "operations": ["thumbnail"]}
    record.outbox = ["1:e:media.created"]
    doc = record.to_doc()

    assert MediaRecord.from_doc(doc) == record
    doc["variants"][0]["meta"]["sizes"].append(3)
    doc["outbox"].append("2:f:media.ready")
    doc["placeholder"]["color"] = "#000000"
    doc["job"]["operations"].clear()
    assert record.variants[0]["meta"]["sizes"] == [1, 2]
    assert record.outbox == ["1:e:media.created"]
    assert record.placeholder["color"] == "#102030"
    assert record.job["operations"] == ["thumbnail"]
