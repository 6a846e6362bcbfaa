"""Webhook endpoints, their deliveries, and the events of removed media, as stored.

Like the media records (mediasvc/records.py): times are integer milliseconds, fields a query
filters on are always present with a non-null value (the embedded database tells null from
missing in no query), lists of documents are only ever set whole, never pushed to, and
booleans are read back through `bool()` (the embedded database's `$set` stores 1 and 0).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mediasvc.records import Doc

_DELIVERY_IDS = uuid.UUID("5b0c2a53-49a5-4d1c-9d55-3f0c1c0c7a61")  # namespace of delivery ids


@dataclass
class Secret:
    """One signing secret (`whsec_` + base64) and when it stops signing (0: never)."""

    key: str
    expires_at: int = 0

    def signs_at(self, now: int) -> bool:
        """Whether this secret still signs at `now` (ms)."""
        return self.expires_at == 0 or self.expires_at > now


@dataclass
class Endpoint:
    """A registered webhook endpoint: where, which events, whether on, and its secrets
    (the current one first)."""

    id: str
    url: str
    events: list[str]
    secrets: list[Secret]
    created_at: int
    updated_at: int
    enabled: bool = True
    description: str = ""
    disabled_reason: str | None = None
    failing_since: int = 0  # when its deliveries began to fail with no success since (0: not)

    def signing_keys(self, now: int) -> list[str]:
        """The secrets that sign a request sent at `now`: current first, then those of a
        rotation still in their grace."""
        return [secret.key for secret in self.secrets if secret.signs_at(now)]

    def to_doc(self) -> Doc:
        doc = dataclasses.asdict(self)
        doc["_id"] = doc.pop("id")
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> Endpoint:
        values = {name: doc[name] for name in _ENDPOINT_FIELDS if name in doc}
        values["id"] = doc["_id"]
        values["secrets"] = [Secret(**secret) for secret in doc.get("secrets", [])]
        values["enabled"] = bool(doc.get("enabled", True))  # `$set` stores booleans as 1 and 0
        return cls(**values)


_ENDPOINT_FIELDS = frozenset(f.name for f in dataclasses.fields(Endpoint)) - {"id"}


class DeliveryState(StrEnum):
    """Pending until an attempt succeeds or the retry window closes."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """The one id of an event's delivery to an endpoint: making it twice is a duplicate key."""
    return str(uuid.uuid5(_DELIVERY_IDS, f"{event_id}/{endpoint_id}"))


@dataclass
class Delivery:
    """One event for one endpoint: the body (fixed when it was made, so every attempt sends
    the same bytes), where it is, and its latest attempts.

    While an attempt runs, `lease` names the claim and `next_attempt_at` is when the lease
    ends: a delivery whose process died is then due again, found by the same query.
    """

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    body: str
    created_at: int
    updated_at: int
    next_attempt_at: int
    window_ends_at: int
    state: DeliveryState = DeliveryState.PENDING
    lease: str = ""
    attempts: list[Doc] = field(default_factory=list)  # {at, status_code, duration_ms, error}
    attempt_count: int = 0

    @property
    def list_key(self) -> str:
        """The order of an endpoint's delivery list (newest first, read backwards)."""
        return f"{self.created_at:013d}.{self.id}"

    def to_doc(self) -> Doc:
        doc = dataclasses.asdict(self)
        doc["_id"] = doc.pop("id")
        doc["state"] = self.state.value
        doc["list_key"] = self.list_key
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> Delivery:
        values: dict[str, Any] = {name: doc[name] for name in _DELIVERY_FIELDS if name in doc}
        values["id"] = doc["_id"]
        values["state"] = DeliveryState(doc.get("state", DeliveryState.PENDING.value))
        return cls(**values)


_DELIVERY_FIELDS = frozenset(f.name for f in dataclasses.fields(Delivery)) - {"id"}


class RemovalState(StrEnum):
    """An event of a removal is written before it (unconfirmed) and confirmed after it."""

    UNCONFIRMED = "unconfirmed"
    READY = "ready"


@dataclass
class RemovedEvent:
    """An event whose media is gone (or going): its payload, captured before the removal.

    `due_at` is when the relay takes it: at once once confirmed; for an unconfirmed one, a
    grace period later, when it checks whether the media is really gone.
    """

    id: str
    type: str
    at: int
    media_id: str
    body: str
    state: RemovalState
    due_at: int

    def to_doc(self) -> Doc:
        doc = dataclasses.asdict(self)
        doc["_id"] = doc.pop("id")
        doc["state"] = self.state.value
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> RemovedEvent:
        return cls(
            id=doc["_id"],
            type=doc["type"],
            at=doc["at"],
            media_id=doc["media_id"],
            body=doc["body"],
            state=RemovalState(doc["state"]),
            due_at=doc["due_at"],
        )
