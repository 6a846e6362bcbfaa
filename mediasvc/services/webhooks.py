"""Webhook endpoints for admins: register, list, read, change, remove, rotate the secret,
and look at or repeat deliveries. Knows nothing about HTTP (handlers/webhooks.py)."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from msgspec import UNSET

from mediasvc.auth import Principal
from mediasvc.errors import BadRequest, Conflict, Forbidden, NotFound
from mediasvc.models.base import given
from mediasvc.models.webhooks import (
    Delivery as DeliveryModel,
)
from mediasvc.models.webhooks import (
    DeliveryAttempt,
    DeliveryListParams,
    DeliveryStatus,
    Webhook,
    WebhookCreate,
    WebhookUpdate,
    WebhookWithSecret,
)
from mediasvc.records import Doc, now_ms
from mediasvc.services.presenter import iso
from mediasvc.settings import Settings
from mediasvc.webhooks.client import is_public
from mediasvc.webhooks.events import EVENT_TYPES, EventType
from mediasvc.webhooks.records import Delivery, DeliveryState, Endpoint, Secret
from mediasvc.webhooks.signing import new_secret
from mediasvc.webhooks.store import WebhookStore
from mediasvc.wire import canonical_uuid

ADMINS_ONLY = "Only admins may manage webhooks"
_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z)({_LABEL}\.)*{_LABEL}\.?")  # as urlsplit lowercases it


@dataclass(frozen=True)
class DeliveryPage:
    """A page of deliveries, and the list key to go on from (None: no more)."""

    items: list[Delivery]
    after: str | None


class WebhookEndpoints:
    """The admin API's operations on endpoints and their deliveries."""

    def __init__(
        self,
        store: WebhookStore,
        settings: Settings,
        on_deliveries: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.on_deliveries = on_deliveries

    # ---- endpoints

    async def create(self, principal: Principal, request: WebhookCreate) -> tuple[Endpoint, str]:
        """Register an endpoint; its secret is returned this once."""
        _admin(principal)
        url = self._checked_url(request.url)
        events = _checked_events(request.events)
        if await self.store.count_endpoints() >= self.settings.webhook_max_endpoints:
            raise Conflict(f"At most {self.settings.webhook_max_endpoints} webhook endpoints")
        now, secret = now_ms(), new_secret()
        endpoint = Endpoint(
            id=str(uuid.uuid4()),
            url=url,
            events=events,
            secrets=[Secret(secret)],
            created_at=now,
            updated_at=now,
            enabled=request.enabled,
            description=request.description,
        )
        await self.store.insert_endpoint(endpoint)
        return endpoint, secret

    async def list_all(self, principal: Principal) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        _admin(principal)
        return await self.store.endpoints(self.settings.webhook_max_endpoints)

    async def get(self, principal: Principal, endpoint_id: str) -> Endpoint:
        """One endpoint; 404 if there is none by that id."""
        _admin(principal)
        canonical = canonical_uuid(endpoint_id)
        endpoint = await self.store.endpoint(canonical) if canonical else None
        if endpoint is None:
            raise NotFound("Webhook not found")
        return endpoint

    async def update(
        self, principal: Principal, endpoint_id: str, patch: WebhookUpdate
    ) -> Endpoint:
        """Change url, events, enabled, description; enabling clears why it was disabled."""
        endpoint = await self.get(principal, endpoint_id)
        changes: Doc = given(patch)
        if patch.url is not UNSET:
            changes["url"] = self._checked_url(patch.url)
        if patch.events is not UNSET:
            changes["events"] = _checked_events(patch.events)
        if patch.enabled is True:
            changes.update(disabled_reason=None, failing_since=0)
        changes["updated_at"] = now_ms()
        changed = await self.store.change_endpoint(endpoint.id, changes)
        if changed is None:
            raise NotFound("Webhook not found")
        return changed

    async def delete(self, principal: Principal, endpoint_id: str) -> None:
        """Remove an endpoint with its deliveries (the pending ones are never sent)."""
        endpoint = await self.get(principal, endpoint_id)
        if not await self.store.delete_endpoint(endpoint.id):
            raise NotFound("Webhook not found")

    async def rotate_secret(self, principal: Principal, endpoint_id: str) -> tuple[Endpoint, str]:
        """A new secret, returned this once; the current one keeps signing beside it for
        `webhook_secret_grace` seconds, older ones stop."""
        endpoint = await self.get(principal, endpoint_id)
        now, secret = now_ms(), new_secret()
        ends = now + int(self.settings.webhook_secret_grace * 1000)
        current = endpoint.secrets[0].key if endpoint.secrets else None
        kept = [Secret(current, ends)] if current is not None and ends > now else []
        secrets = [Secret(secret), *kept]
        changes = {"secrets": [{"key": s.key, "expires_at": s.expires_at} for s in secrets]}
        changed = await self.store.change_endpoint(endpoint.id, {**changes, "updated_at": now})
        if changed is None:
            raise NotFound("Webhook not found")
        return changed, secret

    # ---- deliveries

    async def deliveries(
        self, principal: Principal, endpoint_id: str, params: DeliveryListParams
    ) -> DeliveryPage:
        """A page of the endpoint's deliveries, newest first."""
        endpoint = await self.get(principal, endpoint_id)
        limit = self.settings.default_page_size if params.limit is UNSET else params.limit
        limit = min(limit, self.settings.max_page_size)
        before = _cursor(params.cursor) if params.cursor else None
        found = await self.store.deliveries(endpoint.id, before, limit + 1)
        page = found[:limit]
        after = page[-1].list_key if len(found) > limit else None
        return DeliveryPage(page, after)

    async def redeliver(self, principal: Principal, endpoint_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again (same body, same webhook-id), with a new retry window."""
        endpoint = await self.get(principal, endpoint_id)
        canonical = canonical_uuid(delivery_id)
        found = await self.store.delivery(endpoint.id, canonical) if canonical else None
        if found is None:
            raise NotFound("Delivery not found")
        now = now_ms()
        window = int(self.settings.webhook_retry_window * 1000)
        changes = {"next_attempt_at": now, "window_ends_at": now + window, "updated_at": now}
        again = await self.store.resend(endpoint.id, found.id, changes)
        if again is None:
            if await self.store.delivery(endpoint.id, found.id) is None:
                raise NotFound("Delivery not found")
            raise Conflict("An attempt of this delivery is running; try again shortly")
        self.on_deliveries()
        return again

    # ---- checks

    def _checked_url(self, url: str) -> str:
        """http(s), a host, no credentials; an IP literal must be public unless private
        addresses are allowed (names are checked when a delivery connects)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a port that is not a number is a ValueError
        except ValueError:
            raise BadRequest("url is not a valid URL") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise BadRequest("url must be an http or https URL with a host")
        if parts.username is not None or parts.password is not None:
            raise BadRequest("url must not carry credentials")
        if parts.fragment:
            raise BadRequest("url must not have a fragment")
        host = parts.hostname
        if not _is_ip(host) and not _HOST_NAME.fullmatch(host):
            raise BadRequest("url must have a host name or an IP address")
        if not self.settings.webhook_allow_private and _is_ip(host) and not is_public(host):
            raise BadRequest(f"url must not point at a non-public address ({host[:64]})")
        return url


def _admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden(ADMINS_ONLY)


def _checked_events(events: list[str]) -> list[str]:
    """The events as given, once each; a 400 that names every unknown one."""
    unknown = sorted({event for event in events if event not in EVENT_TYPES})
    if unknown:
        shown = ", ".join(f"'{event[:64]}'" for event in unknown[:10])
        raise BadRequest(f"Unknown event types: {shown} (known: {', '.join(EVENT_TYPES)})")
    return list(dict.fromkeys(events))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _cursor(text: str) -> str:
    """A list key from a `next` link (it is only ever compared as a string)."""
    if not text.replace(".", "").replace("-", "").isalnum() or len(text) > 200:
        raise BadRequest("cursor is not valid")
    return text


# ---- the API's forms


def present_endpoint(endpoint: Endpoint) -> Webhook:
    """An endpoint as the API shows it (no secret)."""
    return Webhook(
        id=endpoint.id,
        url=endpoint.url,
        events=[EventType(event) for event in endpoint.events],
        enabled=endpoint.enabled,
        description=endpoint.description,
        disabled_reason=endpoint.disabled_reason,
        created_at=iso(endpoint.created_at),
        updated_at=iso(endpoint.updated_at),
    )


def present_with_secret(endpoint: Endpoint, secret: str) -> WebhookWithSecret:
    """An endpoint with its new secret: the answer of a creation or a rotation."""
    shown = present_endpoint(endpoint)
    fields = {name: getattr(shown, name) for name in shown.__struct_fields__}
    return WebhookWithSecret(**fields, secret=secret)


_SHOWN: dict[DeliveryState, DeliveryStatus] = {
    DeliveryState.PENDING: "pending",
    DeliveryState.SUCCEEDED: "succeeded",
    DeliveryState.FAILED: "failed",
}


def present_delivery(delivery: Delivery, now: int) -> DeliveryModel:
    """A delivery as the API shows it; `sending` while an attempt holds its lease."""
    pending = delivery.state is DeliveryState.PENDING
    state = _SHOWN[delivery.state]
    if pending and delivery.lease and delivery.next_attempt_at > now:
        state = "sending"
    return DeliveryModel(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=EventType(delivery.event_type),
        state=state,
        attempts=[
            DeliveryAttempt(
                at=iso(a["at"]),
                status_code=a.get("status_code"),
                duration_ms=a.get("duration_ms", 0),
                error=a.get("error"),
            )
            for a in delivery.attempts
        ],
        attempt_count=delivery.attempt_count,
        next_attempt_at=iso(delivery.next_attempt_at) if pending else None,
        created_at=iso(delivery.created_at),
        updated_at=iso(delivery.updated_at),
    )
