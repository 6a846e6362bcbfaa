"""The embedded database the deviation tests run against: one in-memory server per module,
and a media collection seeded like mediasvc's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from mediasvc.embedded_db import EmbeddedMongo
from tests.embedded_db.shapes import (
    MEDIA_INDEXES,
    SEEDED,
    Doc,
    Embedded,
    Seeded,
    create_indexes,
    media_documents,
)


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
