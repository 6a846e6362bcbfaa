"""Sends deliveries: claims due ones with a lease, at most `webhook_concurrency` at once per
process, and records each attempt; failures are retried with exponential backoff and jitter
until the retry window closes. Any process may send any delivery: a claim is one atomic
update, and a delivery whose process died is due again when its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid

from mediasvc.errors import MediaError
from mediasvc.records import Doc, now_ms
from mediasvc.settings import Settings
from mediasvc.webhooks.client import Outcome, WebhookClient
from mediasvc.webhooks.records import Delivery, DeliveryState, Endpoint
from mediasvc.webhooks.store import WebhookStore

log = logging.getLogger(__name__)
GONE = 410  # Standard Webhooks: the receiver wants no more; the endpoint is disabled


def retry_delay(settings: Settings, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the attempt after `attempt` (1 = the first): the base doubled per
    attempt, within ±25 % jitter, at most the cap; a receiver's Retry-After instead, within
    the cap."""
    cap = settings.webhook_retry_max_interval
    if retry_after is not None:
        return min(cap, max(retry_after, 0.0))
    backoff = settings.webhook_retry_base * 2.0 ** min(attempt - 1, 60)
    return min(cap, backoff * random.uniform(0.75, 1.25))


class Sender:
    """The sending loop of one process."""

    def __init__(self, store: WebhookStore, client: WebhookClient, settings: Settings) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Begin sending in the background."""
        self._loop = asyncio.create_task(self._claim_loop(), name="webhook-sender")

    def wake(self) -> None:
        """Deliveries were just made here: look now instead of at the next poll."""
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Claim nothing more; let attempts in flight end within `grace` seconds (the rest
        are cut off and their leases lapse: another process sends them again)."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await asyncio.gather(self._loop, return_exceptions=True)
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self.client.close()

    async def _claim_loop(self) -> None:
        lease_ms = int(self.settings.webhook_lease * 1000)
        while not self._stopping:
            await self._slots.acquire()
            delivery = None
            try:
                lease = f"{self.owner}:{uuid.uuid4().hex[:12]}"
                delivery = await self.store.claim(lease, now_ms(), lease_ms)
            except MediaError as exc:  # the database down, or full
                log.warning("could not claim a webhook delivery: %s", exc.message)
            except Exception:
                log.exception("could not claim a webhook delivery")
            if delivery is None or self._stopping:
                self._slots.release()
                await self._idle()
                continue
            task = asyncio.create_task(self._attempt(delivery), name=f"delivery-{delivery.id}")
            self._running.add(task)
            task.add_done_callback(self._attempt_done)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        self._wake.set()

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_interval)

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            endpoint = await self.store.endpoint(delivery.endpoint_id)
            if endpoint is None:  # deleted since: its deliveries go with it
                await self.store.drop_delivery(delivery.id)
                return
            if not endpoint.enabled:
                outcome = Outcome(None, 0, "The endpoint is disabled; not sent")
                await self._record(delivery, outcome, final=True)
                return
            keys = endpoint.signing_keys(now_ms())
            outcome = await self.client.send(endpoint.url, delivery.event_id, delivery.body, keys)
            await self._record(delivery, outcome)
            await self._judge_endpoint(endpoint, outcome)
        except MediaError as exc:  # database down or full: the lease lapses, it is tried again
            log.warning("webhook delivery %s: %s", delivery.id, exc.message)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)

    async def _record(self, delivery: Delivery, outcome: Outcome, *, final: bool = False) -> None:
        """The attempt onto the delivery's history, and what comes next: done, another
        attempt after the backoff, or failed once the window has closed."""
        now = now_ms()
        attempt: Doc = {
            "at": now - outcome.duration_ms,
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error,
        }
        kept = [*delivery.attempts, attempt][-self.settings.webhook_attempts_kept :]
        count = delivery.attempt_count + 1
        changes: Doc = {"attempts": kept, "attempt_count": count, "updated_at": now}
        if outcome.delivered:
            changes["state"] = DeliveryState.SUCCEEDED.value
        else:
            delay = retry_delay(self.settings, count, outcome.retry_after)
            next_at = now + int(delay * 1000)
            if final or outcome.status_code == GONE or next_at > delivery.window_ends_at:
                changes["state"] = DeliveryState.FAILED.value
            else:
                changes["next_attempt_at"] = next_at
        if not await self.store.settle(delivery.id, delivery.lease, changes):
            log.info("webhook delivery %s was taken over; its attempt is not recorded", delivery.id)

    async def _judge_endpoint(self, endpoint: Endpoint, outcome: Outcome) -> None:
        """Keep count of when an endpoint began failing; disable it once it has failed for
        `webhook_disable_after` seconds with no success, or at once on 410 Gone."""
        now = now_ms()
        if outcome.delivered:
            if endpoint.failing_since:
                await self.store.change_endpoint(endpoint.id, {"failing_since": 0})
            return
        if outcome.status_code == GONE:
            await self._disable(endpoint, "The receiver answered 410 Gone", now)
            return
        if not endpoint.failing_since:
            await self.store.change_endpoint(
                endpoint.id, {"failing_since": now}, where={"failing_since": 0}
            )
            return
        failing = (now - endpoint.failing_since) / 1000
        if failing >= self.settings.webhook_disable_after:
            reason = f"Deliveries failed for {failing:.0f} s with no success"
            await self._disable(endpoint, reason, now)

    async def _disable(self, endpoint: Endpoint, reason: str, now: int) -> None:
        changes = {"enabled": False, "disabled_reason": reason, "updated_at": now}
        if await self.store.change_endpoint(endpoint.id, changes, where={"enabled": True}):
            log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)
