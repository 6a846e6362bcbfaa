"""The relay: pending events into deliveries, one per enabled endpoint subscribed to the type.

It runs in every process. Each pass takes the media whose outbox holds events (oldest
first), makes their deliveries with the media as the API shows it now, and only then takes
the events off the media, exactly those entries (an event pushed meanwhile stays for the next
pass). Then the same for the events of removed media. A pass cut short by a crash is
repeated by the next one, anywhere: a delivery's id is its event's and endpoint's, so making
it twice makes it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mediasvc.errors import MediaError
from mediasvc.models.media import Media
from mediasvc.records import MediaRecord, now_ms
from mediasvc.repository import MediaRepository
from mediasvc.settings import Settings
from mediasvc.webhooks.events import Event
from mediasvc.webhooks.payloads import payload_body
from mediasvc.webhooks.records import (
    Delivery,
    Endpoint,
    RemovalState,
    RemovedEvent,
    delivery_id,
)
from mediasvc.webhooks.store import WebhookStore

log = logging.getLogger(__name__)
BATCH = 100  # media (or removal events) per pass step


class Relay:
    """Turns events into deliveries, in the background of one process."""

    def __init__(
        self,
        repository: MediaRepository,
        store: WebhookStore,
        present: Callable[[MediaRecord], Media],
        settings: Settings,
        on_deliveries: Callable[[], None] = lambda: None,
    ) -> None:
        self.repository = repository
        self.store = store
        self.present = present
        self.settings = settings
        self.on_deliveries = on_deliveries
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Relay in the background until `stop`."""
        self._task = asyncio.create_task(self._run(), name="webhook-relay")

    async def stop(self) -> None:
        """Stop relaying: the pass under way ends first (within the shutdown timeout), since
        a database call cancelled half-way can leave the driver's socket unclosed; a pass cut
        off after that is done again by the next one, anywhere."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=self.settings.shutdown_timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.relay_once()
            except MediaError as exc:
                log.warning("could not relay webhook events: %s", exc.message)
                busy = False
            except Exception:
                log.exception("could not relay webhook events")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), self.settings.webhook_poll_interval
                    )

    async def relay_once(self) -> bool:
        """One pass; True if it found a full batch (there may be more right away)."""
        endpoints: list[Endpoint] | None = None
        media = await self.repository.with_events(BATCH)
        if media:
            endpoints = await self._endpoints()
            await self._relay_media(media, endpoints)
        removed = await self._due_removals()
        if removed:
            endpoints = endpoints if endpoints is not None else await self._endpoints()
            await self._relay_removed(removed, endpoints)
        return len(media) == BATCH or len(removed) >= BATCH

    async def _endpoints(self) -> list[Endpoint]:
        every = await self.store.endpoints(self.settings.webhook_max_endpoints)
        return [endpoint for endpoint in every if endpoint.enabled]

    async def _relay_media(self, media: list[MediaRecord], endpoints: list[Endpoint]) -> None:
        deliveries: list[Delivery] = []
        relayed: dict[str, list[str]] = {}
        subscribed = {event_type for endpoint in endpoints for event_type in endpoint.events}
        for record in media:
            relayed[record.id] = record.outbox
            # an entry that is no event is dropped, and so is one nobody subscribes to
            events = [event for event in map(Event.decode, record.outbox) if event is not None]
            events = [event for event in events if event.type in subscribed]
            if not events:
                continue  # nothing to present: most records, while no endpoint is registered
            data = self.present(record)
            for event in events:
                body = payload_body(event, data)
                deliveries += _deliveries(
                    event.id, event.type, body, event.at, endpoints, self.settings
                )
        await self._deliver(deliveries)
        await self.repository.remove_events(relayed)

    async def _due_removals(self) -> list[RemovedEvent]:
        """Confirmed events, and unconfirmed ones past their grace whose media is gone (those
        whose media is still there are dropped: the removal did not happen)."""
        now = now_ms()
        ready = await self.store.due_removals(RemovalState.READY, now, BATCH)
        unconfirmed = await self.store.due_removals(RemovalState.UNCONFIRMED, now, BATCH)
        kept: list[RemovedEvent] = []
        dropped: list[RemovedEvent] = []
        for event in unconfirmed:
            gone = await self.repository.get(event.media_id) is None
            (kept if gone else dropped).append(event)
        await self.store.forget([event.id for event in dropped])
        return [*ready, *kept]

    async def _relay_removed(self, events: list[RemovedEvent], endpoints: list[Endpoint]) -> None:
        deliveries: list[Delivery] = []
        for event in events:
            deliveries += _deliveries(
                event.id, event.type, event.body, event.at, endpoints, self.settings
            )
        await self._deliver(deliveries)
        await self.store.forget([event.id for event in events])

    async def _deliver(self, deliveries: list[Delivery]) -> None:
        await self.store.add_deliveries(deliveries)
        if deliveries:
            self.on_deliveries()


def _deliveries(
    event_id: str,
    event_type: str,
    body: str,
    at: int,
    endpoints: list[Endpoint],
    settings: Settings,
) -> list[Delivery]:
    """One delivery of an event per endpoint subscribed to its type, due at once (in the
    order of the events' times)."""
    now = now_ms()
    window = int(settings.webhook_retry_window * 1000)
    return [
        Delivery(
            id=delivery_id(event_id, endpoint.id),
            endpoint_id=endpoint.id,
            event_id=event_id,
            event_type=event_type,
            body=body,
            created_at=now,
            updated_at=now,
            next_attempt_at=min(at, now),
            window_ends_at=now + window,
        )
        for endpoint in endpoints
        if event_type in endpoint.events
    ]
