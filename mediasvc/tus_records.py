"""Resumable (tus) uploads as the service holds them, and the collection that stores them.

One document per upload in ``tus_uploads``, its `_id` the upload's id (the media's id for a
single or final upload). The document is the truth about the upload: how many bytes are
durably stored (`offset`), which S3 parts hold them, and who may append right now.

Appending is guarded by a lease in the document itself, taken with one atomic
``update_one`` whose filter says "nobody holds it" (`lease_until` in the past), renewed while
a PATCH runs and released at its end. Every change a PATCH commits is conditional on still
holding the lease, so two PATCHes on one upload, on any processes or nodes, never both
append. Filters use explicit ``$eq`` (see docs/operations.md, "The embedded database").
Commits are journaled (``j=True``): an offset answered with 204 is on disk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, WriteConcern
from pymongo.errors import DuplicateKeyError

from mediasvc.records import Doc
from mediasvc.repository import database_errors, eq


class TusKind(StrEnum):
    """A whole file, a piece of one (concatenation), or the file joined from pieces."""

    SINGLE = "single"
    PARTIAL = "partial"
    FINAL = "final"


class TusState(StrEnum):
    """Receiving bytes; all received and stored as a media; or rejected by the checks."""

    RECEIVING = "receiving"
    DONE = "done"
    FAILED = "failed"


class PartMode(StrEnum):
    """Where the received bytes wait: one file on the server's disk, or an S3 multipart
    upload plus the remainder (less than a part) on the server's disk."""

    FILE = "file"
    MULTIPART = "multipart"


@dataclass
class TusUpload:
    """One resumable upload."""

    id: str
    owner: str
    kind: TusKind
    length: int | None  # None: deferred (creation-defer-length)
    size_limit: int  # the most bytes it may grow to (its media type's limit)
    created_at: int
    expires_at: int
    mode: PartMode = PartMode.FILE
    offset: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    concat_of: list[str] = field(default_factory=list)  # a final upload's partial ids
    state: TusState = TusState.RECEIVING
    error: str | None = None
    multipart_id: str | None = None
    parts: list[Doc] = field(default_factory=list)  # {"number", "etag", "size"}
    lease_owner: str = ""
    lease_until: int = 0

    @property
    def stored_in_parts(self) -> int:
        """Bytes held by the uploaded S3 parts (the rest of `offset` is the remainder)."""
        return sum(int(part["size"]) for part in self.parts)

    @property
    def next_part(self) -> int:
        """The number of the S3 part the remainder will become."""
        return len(self.parts) + 1

    @property
    def complete(self) -> bool:
        """Every byte of a known length is received."""
        return self.length is not None and self.offset == self.length

    def to_doc(self) -> Doc:
        doc = dataclasses.asdict(self)
        doc["_id"] = doc.pop("id")
        for name in ("kind", "state", "mode"):
            doc[name] = str(doc[name])
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> TusUpload:
        values = {name: doc[name] for name in _FIELDS if name in doc}
        values["id"] = doc["_id"]
        values["kind"] = TusKind(doc["kind"])
        values["state"] = TusState(doc.get("state", TusState.RECEIVING.value))
        values["mode"] = PartMode(doc.get("mode", PartMode.FILE.value))
        return cls(**values)


_FIELDS = frozenset(f.name for f in dataclasses.fields(TusUpload)) - {"id"}


class LeaseLost(Exception):
    """A commit found the lease held by someone else (it expired while we stalled)."""


class TusRepository:
    """The `tus_uploads` collection: uploads, their leases and their commits."""

    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        collection = client[database]["tus_uploads"]
        self._uploads = collection
        self._journaled = collection.with_options(write_concern=WriteConcern(j=True))

    async def ensure_indexes(self) -> None:
        """The sweep finds expired uploads of one state by their expiry."""
        with database_errors():
            await self._uploads.create_index(
                [("state", ASCENDING), ("expires_at", ASCENDING)], name="tus_expiry"
            )

    async def insert(self, upload: TusUpload) -> None:
        """Record a new upload (with its lease, when its creation carries bytes)."""
        with database_errors():
            await self._journaled.insert_one(upload.to_doc())

    async def get(self, upload_id: str) -> TusUpload | None:
        with database_errors():
            doc = await self._uploads.find_one({"_id": eq(upload_id)})
        return TusUpload.from_doc(doc) if doc else None

    async def take_lease(self, upload_id: str, owner: str, now: int, until: int) -> bool:
        """Hold the upload until `until` (ms) if nobody holds it at `now`: one atomic update."""
        where = {"_id": eq(upload_id), "lease_until": {"$lt": now}}
        return await self._set_if(where, {"lease_owner": owner, "lease_until": until})

    async def break_lease(self, upload_id: str, dead: str, owner: str, until: int) -> bool:
        """Take over the lease of an owner known to be dead (its process is gone)."""
        where = {"_id": eq(upload_id), "lease_owner": eq(dead)}
        return await self._set_if(where, {"lease_owner": owner, "lease_until": until})

    async def renew(self, upload_id: str, owner: str, until: int) -> bool:
        """Extend our lease; False if it is no longer ours."""
        return await self._set_if(self._ours(upload_id, owner), {"lease_until": until})

    async def release(self, upload_id: str, owner: str) -> None:
        """Give the lease up (if it is still ours)."""
        await self._set_if(self._ours(upload_id, owner), {"lease_owner": "", "lease_until": 0})

    async def commit(self, upload_id: str, owner: str, changes: Doc) -> None:
        """Store progress, journaled, only while we hold the lease (else LeaseLost)."""
        if not await self._set_if(self._ours(upload_id, owner), changes, journaled=True):
            raise LeaseLost(upload_id)

    async def delete(self, upload_id: str) -> None:
        with database_errors():
            await self._uploads.delete_one({"_id": eq(upload_id)})

    async def expired(self, state: TusState, before: int, limit: int) -> list[TusUpload]:
        """Uploads in `state` whose expiry is before `before` (ms), for the sweep."""
        with database_errors():
            cursor = self._uploads.find({"state": eq(state.value), "expires_at": {"$lt": before}})
            docs = await cursor.limit(limit).to_list()
        return [TusUpload.from_doc(doc) for doc in docs]

    @staticmethod
    def _ours(upload_id: str, owner: str) -> Doc:
        return {"_id": eq(upload_id), "lease_owner": eq(owner)}

    async def _set_if(self, where: Doc, changes: Doc, *, journaled: bool = False) -> bool:
        collection = self._journaled if journaled else self._uploads
        stored = {k: v.value if isinstance(v, StrEnum) else v for k, v in changes.items()}
        try:
            with database_errors():
                result = await collection.update_one(where, {"$set": stored})
        except DuplicateKeyError:  # no unique index but _id: cannot happen, never a 500
            return False
        return bool(result.matched_count)


def lease_changes(upload: TusUpload) -> dict[str, Any]:
    """The progress fields a commit writes from an upload record."""
    return {
        "offset": upload.offset,
        "length": upload.length,
        "parts": upload.parts,
        "multipart_id": upload.multipart_id,
    }
