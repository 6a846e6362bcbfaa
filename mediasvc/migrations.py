"""Bringing records written by earlier versions up to date, at start-up or by `mediasvc migrate`.

Version 2 of the media records stores the derived fields lists are served from (`sort_key`,
`search_text`, `entity_slot`) and a maintained total. The migration walks the collection in
`_id` order in batches, writes each record's derived fields (recomputed: running it twice
changes nothing), and remembers how far it got, so a migration cut short by a crash goes on
from there. Any number of processes may run it at once.

Version 3 maintains totals per entity type and per media type beside the grand total: no
record changes, the totals are counted (a few index-served counts).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from mediasvc.records import Doc, MediaRecord, derived_fields

log = logging.getLogger(__name__)
SCHEMA_VERSION = 3
DERIVED_SINCE = 2  # the version whose records first carry the derived fields
BATCH = 500
_SCHEMA = "media_schema"


async def migrate_media(
    db: AsyncDatabase[Doc], media: AsyncCollection[Doc], recount: Callable[[], Awaitable[int]]
) -> dict[str, int]:
    """Migrate every media record to the current version; report how many were rewritten."""
    meta = db["meta"]
    state = await meta.find_one({"_id": {"$eq": _SCHEMA}}) or {}
    version = state.get("version", 0)
    if version >= SCHEMA_VERSION:
        return {"migrated": 0}
    migrated = await _derive_all(meta, media, state.get("after")) if version < DERIVED_SINCE else 0
    total = await recount()
    await meta.update_one(
        {"_id": {"$eq": _SCHEMA}},
        {"$set": {"version": SCHEMA_VERSION}, "$unset": {"after": ""}},
        upsert=True,
    )
    log.info("media records at version %d: %d rewritten, %d in all", SCHEMA_VERSION,
             migrated, total)  # fmt: skip
    return {"migrated": migrated}


async def _derive_all(meta: AsyncCollection[Doc], media: AsyncCollection[Doc], after: Any) -> int:
    """Write every record's derived fields, in batches, from where an earlier run stopped."""
    if after is not None:
        log.info("resuming the migration of media records after %s", after)
    migrated = 0
    while True:
        where: Doc = {"_id": {"$gt": after}} if after is not None else {}
        batch = await media.find(where).sort("_id", ASCENDING).limit(BATCH).to_list()
        if not batch:
            return migrated
        await media.bulk_write([_derive(doc) for doc in batch], ordered=False)
        after = batch[-1]["_id"]
        migrated += len(batch)
        await meta.update_one({"_id": {"$eq": _SCHEMA}}, {"$set": {"after": after}}, upsert=True)
        log.info("migrated %d media records", migrated)


def _derive(doc: Doc) -> UpdateOne:
    return UpdateOne(
        {"_id": {"$eq": doc["_id"]}}, {"$set": derived_fields(MediaRecord.from_doc(doc))}
    )
