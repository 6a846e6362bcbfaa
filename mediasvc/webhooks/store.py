"""The collections of webhooks: endpoints, deliveries, and the events of removed media.

Every query is one the indexes serve on any MongoDB-wire server (explicit `$eq` on leading
keys, a range and sort on the next; see tests/embedded_db): deliveries are claimed by
(state, next_attempt_at) and listed by (endpoint_id, list_key); events of removals are taken
by (state, due_at). Endpoints are few (`webhook_max_endpoints`) and read whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, DeleteOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from mediasvc.records import Doc
from mediasvc.repository import database_errors, eq
from mediasvc.webhooks.records import (
    Delivery,
    DeliveryState,
    Endpoint,
    RemovalState,
    RemovedEvent,
)

_DUPLICATE_KEY = 11000


class WebhookStore:
    """Endpoints, deliveries and removal events in MongoDB."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        db = client[database]
        self._endpoints = db["webhooks"]
        self._deliveries = db["webhook_deliveries"]
        self._removals = db["webhook_events"]

    async def ensure_indexes(self) -> None:
        """The indexes of the claim, the lists and the relay."""
        with database_errors():
            await self._deliveries.create_index(
                [("state", ASCENDING), ("next_attempt_at", ASCENDING)], name="due_order"
            )
            await self._deliveries.create_index(
                [("endpoint_id", ASCENDING), ("list_key", ASCENDING)], name="by_endpoint"
            )
            await self._removals.create_index(
                [("state", ASCENDING), ("due_at", ASCENDING)], name="due_order"
            )

    # ---- endpoints

    async def count_endpoints(self) -> int:
        """How many endpoints are registered."""
        with database_errors():
            answer = await self._endpoints.database.command("count", self._endpoints.name)
        return int(answer["n"])

    async def insert_endpoint(self, endpoint: Endpoint) -> None:
        """Register a new endpoint."""
        with database_errors():
            await self._endpoints.insert_one(endpoint.to_doc())

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        """One endpoint, or None."""
        with database_errors():
            doc = await self._endpoints.find_one({"_id": eq(endpoint_id)})
        return Endpoint.from_doc(doc) if doc else None

    async def endpoints(self, limit: int) -> list[Endpoint]:
        """Every endpoint (at most `limit`), oldest first."""
        with database_errors():
            docs = await self._endpoints.find({}).sort("created_at", ASCENDING).to_list(limit)
        return [Endpoint.from_doc(doc) for doc in docs]

    async def change_endpoint(
        self, endpoint_id: str, changes: Mapping[str, Any], where: Mapping[str, Any] | None = None
    ) -> Endpoint | None:
        """Set fields of an endpoint (only while it matches `where`, if given); the endpoint
        after the change, or None."""
        query: Doc = {"_id": eq(endpoint_id), **{k: eq(v) for k, v in (where or {}).items()}}
        with database_errors():
            doc = await self._endpoints.find_one_and_update(
                query, {"$set": dict(changes)}, return_document=ReturnDocument.AFTER
            )
        return Endpoint.from_doc(doc) if doc else None

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint and every delivery of it (pending ones are not sent)."""
        with database_errors():
            result = await self._endpoints.delete_one({"_id": eq(endpoint_id)})
            await self._deliveries.delete_many({"endpoint_id": eq(endpoint_id)})
        return result.deleted_count == 1

    # ---- deliveries

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Make deliveries; one that exists already (the same event and endpoint) stays as it
        is, so relaying an event twice makes it once."""
        await _insert_new(self._deliveries, [delivery.to_doc() for delivery in deliveries])

    async def claim(self, lease: str, now: int, lease_ms: int) -> Delivery | None:
        """The pending delivery due longest ago (a lapsed lease included), now ours under
        `lease` until `now + lease_ms`."""
        with database_errors():
            doc = await self._deliveries.find_one_and_update(
                {"state": eq(DeliveryState.PENDING.value), "next_attempt_at": {"$lte": now}},
                {"$set": {"lease": lease, "next_attempt_at": now + lease_ms}},
                sort=[("next_attempt_at", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
        return Delivery.from_doc(doc) if doc else None

    async def settle(self, delivery_id: str, lease: str, changes: Mapping[str, Any]) -> bool:
        """Record an attempt's outcome on a delivery we still hold; False if we do not."""
        with database_errors():
            result = await self._deliveries.update_one(
                {"_id": eq(delivery_id), "lease": eq(lease)},
                {"$set": {**changes, "lease": ""}},
            )
        return result.matched_count == 1

    async def drop_delivery(self, delivery_id: str) -> None:
        """Forget a delivery (its endpoint is gone)."""
        with database_errors():
            await self._deliveries.delete_one({"_id": eq(delivery_id)})

    async def deliveries(self, endpoint_id: str, before: str | None, limit: int) -> list[Delivery]:
        """An endpoint's deliveries, newest first, from before the list key `before`."""
        query: Doc = {"endpoint_id": eq(endpoint_id)}
        if before is not None:
            query["list_key"] = {"$lt": before}
        with database_errors():
            cursor = self._deliveries.find(query).sort("list_key", DESCENDING)
            docs = await cursor.limit(limit).to_list()
        return [Delivery.from_doc(doc) for doc in docs]

    async def delivery(self, endpoint_id: str, delivery_id: str) -> Delivery | None:
        """One delivery of an endpoint, or None."""
        with database_errors():
            doc = await self._deliveries.find_one(
                {"_id": eq(delivery_id), "endpoint_id": eq(endpoint_id)}
            )
        return Delivery.from_doc(doc) if doc else None

    async def resend(
        self, endpoint_id: str, delivery_id: str, changes: Mapping[str, Any]
    ) -> Delivery | None:
        """Make a delivery pending again unless an attempt of it is running (None then)."""
        with database_errors():
            doc = await self._deliveries.find_one_and_update(
                {"_id": eq(delivery_id), "endpoint_id": eq(endpoint_id), "lease": eq("")},
                {"$set": {**changes, "state": DeliveryState.PENDING.value}},
                return_document=ReturnDocument.AFTER,
            )
        return Delivery.from_doc(doc) if doc else None

    # ---- events of removed media

    async def announce(self, events: Sequence[RemovedEvent]) -> None:
        """Write events before their removal (unconfirmed); those that exist stay."""
        await _insert_new(self._removals, [event.to_doc() for event in events])

    async def confirm(self, ids: Sequence[str], now: int) -> None:
        """The removal happened: the relay may take these events now."""
        ready = {"$set": {"state": RemovalState.READY.value, "due_at": now}}
        if ids:  # one round trip, each by `_id` (`$in` is not index-served in updates)
            with database_errors():
                await self._removals.bulk_write([UpdateOne({"_id": eq(i)}, ready) for i in ids])

    async def add_ready(self, events: Sequence[RemovedEvent]) -> None:
        """Write events whose removal is already done (those that exist stay)."""
        await _insert_new(self._removals, [event.to_doc() for event in events])

    async def forget(self, ids: Sequence[str]) -> None:
        """Drop events: relayed, or their removal did not happen."""
        if ids:
            with database_errors():
                await self._removals.bulk_write([DeleteOne({"_id": eq(i)}) for i in ids])

    async def due_removals(self, state: RemovalState, now: int, limit: int) -> list[RemovedEvent]:
        """Events of `state` due by `now`, oldest first."""
        with database_errors():
            cursor = self._removals.find({"state": eq(state.value), "due_at": {"$lte": now}})
            docs = await cursor.sort("due_at", ASCENDING).limit(limit).to_list()
        return [RemovedEvent.from_doc(doc) for doc in docs]


async def _insert_new(collection: AsyncCollection[Doc], docs: list[Doc]) -> None:
    """Insert documents; one whose `_id` exists already is left as it is (a duplicate key)."""
    if not docs:
        return
    with database_errors():
        try:
            await collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            details = exc.details
            failures = details.get("writeErrors") or []
            if details.get("writeConcernErrors") or any(
                failure.get("code") != _DUPLICATE_KEY for failure in failures
            ):
                raise
