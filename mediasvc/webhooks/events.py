"""Event types, and the entries of a media document's outbox.

An event that a change of a media causes is written in the same update as the change: the
media document carries it in `outbox` until the relay has turned it into deliveries. Entries
are strings, `<at ms>:<type>:<id>`: the embedded database stores a pushed document as JSON
text (tests/embedded_db/test_queries.py), so the outbox holds scalars, which every
MongoDB-wire server pushes and pulls alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from mediasvc.records import now_ms


class EventType(StrEnum):
    """What a webhook endpoint can subscribe to."""

    MEDIA_CREATED = "media.created"
    MEDIA_READY = "media.ready"
    MEDIA_FAILED = "media.failed"
    MEDIA_DELETED = "media.deleted"
    UPLOAD_EXPIRED = "upload.expired"


EVENT_TYPES = tuple(kind.value for kind in EventType)


@dataclass(frozen=True)
class Event:
    """One event: its id (the `webhook-id` of every delivery of it), type and time (ms)."""

    id: str
    type: EventType
    at: int

    def encode(self) -> str:
        """The outbox entry of this event."""
        return f"{self.at}:{self.type.value}:{self.id}"

    @classmethod
    def decode(cls, entry: str) -> Event | None:
        """The event of an outbox entry, or None if it is not one (it is then dropped)."""
        at, _, rest = entry.partition(":")
        kind, _, event_id = rest.partition(":")
        if not at.isdigit() or kind not in EVENT_TYPES or not event_id:
            return None
        return cls(event_id, EventType(kind), int(at))


def new_event(kind: EventType, at: int | None = None) -> Event:
    """A new event of `kind`, now unless `at` (ms). Its id has no `.`: the signed content is
    `id.timestamp.body`."""
    return Event(f"evt_{uuid.uuid4().hex}", kind, now_ms() if at is None else at)


def created_events(ready: bool, at: int) -> list[Event]:
    """What a media that is now stored causes: media.created, and media.ready when it needs
    no processing."""
    events = [new_event(EventType.MEDIA_CREATED, at)]
    if ready:
        events.append(new_event(EventType.MEDIA_READY, at))
    return events
