"""An embedded database and a repository on it, driven from an event loop of the test's own
(hypothesis runs each example synchronously, and set-up code may run outside the test loop)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from mediasvc.embedded_db import EmbeddedMongo
from mediasvc.repository import MongoMediaRepository


class Database:
    """A real nx-27017 (in memory, or file-backed under `folder`) with a repository on it."""

    def __init__(self, folder: Path, *, in_memory: bool = True, name: str = "mediasvc") -> None:
        self.loop = asyncio.new_event_loop()
        self.embedded = EmbeddedMongo(folder, in_memory=in_memory, start_timeout=30)
        uri = self.run(self.embedded.start())
        self.client: AsyncMongoClient[Any] = self.run(_client(uri))
        self.db = self.client[name]
        self.repository = MongoMediaRepository(self.client, name)
        self.run(self.repository.ensure_indexes())

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.client.close())
        self.embedded.stop()
        self.loop.close()


async def _client(uri: str) -> AsyncMongoClient[Any]:
    return AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
