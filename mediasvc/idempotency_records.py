"""Idempotency keys as the database holds them: one document per (caller, route, key).

The document's `_id` is a digest of the caller's `sub`, the route and the key, so the
primary key is the unique key and every server process that shares the database sees the
same claims. A document is either `running` (a request holds it under a lease: its
`claim`, renewed while the request runs) or `done` (it holds the first answer and the
fingerprint of the request that got it). Either way `expires_at` says when it stops
counting: the end of the lease of a running one, the end of `idempotency_ttl` of a done
one. An expired document is treated as absent (a claim takes it over with one conditional
update) and the sweep deletes it, by an index on `expires_at`.

Every filter is `_id` plus an explicit `$eq` on the claim (see docs/operations.md, "The
embedded database"); writes that can collide are `insert_one`/`update_one`, which report
a duplicate key on every wire server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from mediasvc.records import Doc
from mediasvc.repository import database_errors, eq

COLLECTION = "idempotency_keys"
EXPIRY_INDEX = ("expires_at",)


class KeyState(StrEnum):
    """A request holds the key, or the key holds that request's answer."""

    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class KeptAnswer:
    """The first answer to a keyed request: what a retry gets back."""

    status: int
    headers: dict[str, str]
    body: str
    fingerprint: str

    def to_doc(self) -> Doc:
        return {"status": self.status, "headers": self.headers, "body": self.body}


@dataclass(frozen=True)
class KeyRecord:
    """One stored idempotency key."""

    id: str
    state: KeyState
    claim: str
    expires_at: int
    answer: KeptAnswer | None = None

    @classmethod
    def from_doc(cls, doc: Doc) -> KeyRecord:
        kept = doc.get("answer")
        answer = None
        if kept:
            headers = {str(k): str(v) for k, v in (kept.get("headers") or {}).items()}
            answer = KeptAnswer(
                int(kept["status"]), headers, str(kept["body"]), str(doc.get("fingerprint", ""))
            )
        return cls(
            id=str(doc["_id"]),
            state=KeyState(doc["state"]),
            claim=str(doc["claim"]),
            expires_at=int(doc["expires_at"]),
            answer=answer,
        )


def held_by(record_id: str, claim: str) -> Doc:
    """The key `record_id` while `claim` holds it (or holds its answer)."""
    return {"_id": eq(record_id), "claim": eq(claim)}


def expired_before(now: int) -> Doc:
    """The keys that stopped counting before `now` (ms): served by the expiry index."""
    return {"expires_at": {"$lt": now}}


def key_id(sub: str, route: str, key: str) -> str:
    """The document id of a key: its caller and route are part of it, so keys of different
    callers or routes never meet. (A digest: `sub` and key may each be 255 characters.)"""
    scope = "\x00".join((sub, route, key)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(scope).hexdigest()


class IdempotencyRepository:
    """The `idempotency_keys` collection: claims, their leases, kept answers, the sweep."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self._keys = client[database][COLLECTION]

    async def ensure_indexes(self) -> None:
        """The sweep deletes expired keys by their expiry."""
        with database_errors():
            await self._keys.create_index(
                [(name, ASCENDING) for name in EXPIRY_INDEX], name="idempotency_expiry"
            )

    async def insert_claim(
        self, record_id: str, claim: str, until: int, now: int, owner: Doc
    ) -> bool:
        """A new running key held by `claim` until `until` (ms); False if the key exists."""
        doc = {"_id": record_id, **_running(claim, until, now), **owner}
        try:
            with database_errors():
                await self._keys.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get(self, record_id: str) -> KeyRecord | None:
        with database_errors():
            doc = await self._keys.find_one({"_id": eq(record_id)})
        return KeyRecord.from_doc(doc) if doc else None

    async def take_over(
        self, record_id: str, old_claim: str, claim: str, until: int, now: int
    ) -> bool:
        """Hold an expired key instead of `old_claim`, if nobody took it over first."""
        changes = _running(claim, until, now)
        where = held_by(record_id, old_claim)
        return await self._update(
            where, {"$set": changes, "$unset": {"answer": "", "fingerprint": ""}}
        )

    async def renew(self, record_id: str, claim: str, until: int) -> bool:
        """Extend a running claim's lease; False if the key is no longer ours."""
        where = {**held_by(record_id, claim), "state": eq(KeyState.RUNNING.value)}
        return await self._update(where, {"$set": {"expires_at": until}})

    async def keep(self, record_id: str, claim: str, answer: KeptAnswer, until: int) -> bool:
        """Store the answer of our claim, kept until `until` (ms); False if it is not ours."""
        changes = {
            "state": KeyState.DONE.value,
            "expires_at": until,
            "answer": answer.to_doc(),
            "fingerprint": answer.fingerprint,
        }
        return await self._update(held_by(record_id, claim), {"$set": changes})

    async def release(self, record_id: str, claim: str) -> None:
        """Forget a running claim (its request ended without an answer worth keeping)."""
        with database_errors():
            await self._keys.delete_one(held_by(record_id, claim))

    async def delete_expired(self, now: int) -> int:
        """Delete the keys that no longer count; returns how many."""
        with database_errors():
            result = await self._keys.delete_many(expired_before(now))
        return int(result.deleted_count)

    async def _update(self, where: Doc, operation: Doc) -> bool:
        with database_errors():
            result = await self._keys.update_one(where, operation)
        return bool(result.matched_count)


def _running(claim: str, until: int, now: int) -> Doc:
    return {"state": KeyState.RUNNING.value, "claim": claim, "expires_at": until, "created_at": now}
