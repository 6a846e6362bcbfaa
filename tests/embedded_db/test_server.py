"""The embedded server's process as mediasvc starts it (mediasvc/nx_27017_server.py): the one
cost it skips, checked against the pinned neosqlite, and the server really started that way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neosqlite
import pytest
from neosqlite.collection import Collection, aggregation_cursor
from pymongo import AsyncMongoClient

from mediasvc.embedded_db import EmbeddedMongo
from mediasvc.nx_27017_server import skip_unused_estimate
from tests.embedded_db.shapes import Doc

COUNT = [{"$match": {"kind": {"$eq": "a"}}}, {"$count": "n"}]


@pytest.fixture
def whole_counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each whole-collection count neosqlite makes in this process, by collection name; the
    cursor's estimate is put back afterwards (the skip patches the class)."""
    cursor = aggregation_cursor.AggregationCursor
    monkeypatch.setattr(cursor, "_estimate_result_size", cursor._estimate_result_size)
    original = Collection.estimated_document_count
    made: list[str] = []

    def counting(self: Collection, *args: Any, **kwargs: Any) -> int:
        made.append(self.name)
        return int(original(self, *args, **kwargs))

    monkeypatch.setattr(Collection, "estimated_document_count", counting)
    yield made


def test_an_aggregation_no_longer_counts_its_whole_collection(whole_counts: list[str]) -> None:
    media = neosqlite.Connection(":memory:")["media"]
    media.insert_many([{"kind": "a" if n % 3 else "b"} for n in range(300)])
    assert list(media.aggregate(COUNT)) == [{"n": 200}]
    assert whole_counts == ["media"], "the pinned neosqlite counts the collection first"

    assert not aggregation_cursor.QUEZ_AVAILABLE  # the estimate's one reader is absent
    assert skip_unused_estimate()
    assert list(media.aggregate(COUNT)) == [{"n": 200}]
    assert whole_counts == ["media"]  # nothing more: the same answer without the count


async def test_the_server_runs_through_the_launcher(tmp_path: Path) -> None:
    server = EmbeddedMongo(tmp_path, in_memory=True, start_timeout=20)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(await server.start())
    try:
        pid = server.pid
        assert pid is not None
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert (
            b"import sys; from mediasvc.nx_27017_server import main; sys.exit(main())" in arguments
        )
        media = client["launch"]["media"]
        await media.insert_many([{"kind": "a" if n % 3 else "b"} for n in range(30)])
        assert await (await media.aggregate(COUNT)).to_list() == [{"n": 20}]
    finally:
        await client.close()
        server.stop()
