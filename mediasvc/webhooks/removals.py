"""Events of media that disappear: deleted through the API, or expired uploads swept.

Their document goes, so the event cannot ride on it: it is written before the removal, with
the media as the API showed it then, and confirmed after. Events still on the document's
outbox (a media.created not yet relayed, say) go the same way, so a quick delete loses none.
A process that dies in between leaves an unconfirmed event; the relay checks it after
`webhook_event_grace`: delivered if the media is gone, dropped if it is still there.
"""

from __future__ import annotations

from collections.abc import Sequence

from mediasvc.models.media import Media
from mediasvc.records import MediaRecord, now_ms
from mediasvc.settings import Settings
from mediasvc.webhooks.events import Event, EventType, new_event
from mediasvc.webhooks.payloads import payload_body
from mediasvc.webhooks.records import RemovalState, RemovedEvent
from mediasvc.webhooks.store import WebhookStore


class RemovalEvents:
    """Writes the events of a removal around it; `base_url` makes the URLs of the payload."""

    def __init__(self, store: WebhookStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.base_url = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"

    async def announce(self, kind: EventType, media: MediaRecord, data: Media) -> list[str]:
        """Before the removal: its event, and the events still on the media's outbox."""
        now = now_ms()
        due = now + int(self.settings.webhook_event_grace * 1000)
        events = [new_event(kind, now), *_outbox(media)]
        await self.store.announce(
            [_removed(event, media.id, data, RemovalState.UNCONFIRMED, due) for event in events]
        )
        return [event.id for event in events]

    async def confirm(self, ids: Sequence[str], removed: MediaRecord, data: Media) -> None:
        """After the removal: the events may go out, with any event pushed onto the media's
        outbox since it was read."""
        now = now_ms()
        await self.store.confirm(ids, now)
        late = [event for event in _outbox(removed) if event.id not in ids]
        await self.store.add_ready(
            [_removed(event, removed.id, data, RemovalState.READY, now) for event in late]
        )

    async def removed(self, kind: EventType, media: MediaRecord, data: Media) -> None:
        """A removal already done (an upload undone after its media.created went out)."""
        event = new_event(kind)
        await self.store.add_ready([_removed(event, media.id, data, RemovalState.READY, event.at)])

    async def discard(self, ids: Sequence[str]) -> None:
        """The removal did not happen (someone else removed the media first)."""
        await self.store.forget(ids)


def _outbox(media: MediaRecord) -> list[Event]:
    return [event for entry in media.outbox if (event := Event.decode(entry)) is not None]


def _removed(
    event: Event, media_id: str, data: Media, state: RemovalState, due: int
) -> RemovedEvent:
    return RemovedEvent(
        id=event.id,
        type=event.type.value,
        at=event.at,
        media_id=media_id,
        body=payload_body(event, data),
        state=state,
        due_at=due,
    )
