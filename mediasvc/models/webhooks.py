"""Webhook endpoints as the admin API takes and shows them, their deliveries, and the body
every delivery sends."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from mediasvc.models.base import (
    MAX_QUERY_INT,
    Count,
    Description,
    Shape,
    Timestamp,
    Url,
    UuidText,
    documented,
    limited_by,
    says,
)
from mediasvc.models.media import Media
from mediasvc.webhooks.events import EVENT_TYPES, EventType

_ONE_OF = f"{{name}} must be a non-empty list of: {', '.join(EVENT_TYPES)}"
# What RFC 3986 lets a URI hold: ASCII letters, digits, the reserved and unreserved marks, and
# percent-encoded octets (a name outside ASCII goes as punycode).
_URI_CHARS = "(?:[A-Za-z0-9._~:/?#\\[\\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})"

WebhookUrl = Annotated[
    str,
    Meta(pattern=f"^https?://{_URI_CHARS}+\\Z", description="http or https, no credentials in it"),
    documented(format="uri"),
    limited_by("maxLength", "webhook_max_url_length"),
    says("{name} must be an http or https URL", high="{name} must be at most {limit} characters"),
]
# Checked by the service, which names every unknown one (the document lists them).
EventName = Annotated[str, Meta(max_length=64), documented(enum=list(EVENT_TYPES))]
EventNames = Annotated[
    list[EventName],
    Meta(min_length=1, max_length=64),
    says(_ONE_OF, item=_ONE_OF, missing=_ONE_OF, low=_ONE_OF, high=_ONE_OF),
]


class WebhookCreate(Shape):
    """A new endpoint: where to send, and which events."""

    url: WebhookUrl
    events: EventNames
    enabled: bool = True
    description: Description = ""


class Webhook(Shape):
    """A webhook endpoint (its secret is shown only when it is made or rotated)."""

    id: UuidText
    url: Url
    events: list[EventType]
    enabled: bool
    description: str
    disabled_reason: Annotated[
        str | None, Meta(description="Why it was disabled on its own (cleared by enabling it)")
    ]
    created_at: Timestamp
    updated_at: Timestamp


class WebhookWithSecret(Webhook):
    """An endpoint with its signing secret, shown this once."""

    secret: Annotated[
        str,
        Meta(
            pattern="^whsec_[A-Za-z0-9+/=]+\\Z",
            description="`whsec_` + base64 of the key that signs its deliveries (Standard "
            "Webhooks); shown only in this answer",
        ),
    ]


class WebhookUpdate(Shape):
    """A PATCH: the fields given change; enabling a disabled endpoint clears its reason."""

    shown_as = Webhook

    url: WebhookUrl | UnsetType = UNSET
    events: EventNames | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET
    description: Description | UnsetType = UNSET


class WebhookList(Shape):
    """Every registered endpoint, oldest first."""

    results: list[Webhook]


class DeliveryAttempt(Shape):
    """One attempt: when, what the receiver answered, how long it took, what went wrong."""

    at: Timestamp
    status_code: Annotated[int, Meta(ge=100, le=999)] | None
    duration_ms: Count
    error: str | None


DeliveryStatus = Literal["pending", "sending", "succeeded", "failed"]


class Delivery(Shape):
    """One event for one endpoint, and its latest attempts (newest last)."""

    id: UuidText
    event_id: Annotated[str, Meta(description="The `webhook-id` of every attempt")]
    event_type: EventType
    state: DeliveryStatus
    attempts: list[DeliveryAttempt]
    attempt_count: Annotated[Count, Meta(description="Attempts in all (the list keeps the last)")]
    next_attempt_at: Annotated[Timestamp | None, Meta(description="While pending or sending")]
    created_at: Timestamp
    updated_at: Timestamp


class DeliveryList(Shape):
    """A page of an endpoint's deliveries, newest first."""

    next: Url | None
    results: list[Delivery]


class DeliveryListParams(Struct, kw_only=True):
    """The page of a delivery list (query parameters; unknown ones are ignored)."""

    limit: (
        Annotated[
            int,
            Meta(
                ge=1, le=MAX_QUERY_INT, description="Page size; above {max_page_size} it is clamped"
            ),
            limited_by("default", "default_page_size", checked=False),
            says(
                "{name} must be an integer",
                low="{name} must be a positive integer",
                high="{name} is out of range",
            ),
        ]
        | UnsetType
    ) = UNSET
    cursor: Annotated[
        str,
        Meta(max_length=200, description="An opaque position from a `next` link"),
        says("{name} is not valid"),
    ] = ""


class WebhookPayload(Shape):
    """What every delivery sends (signed per Standard Webhooks)."""

    type: EventType
    timestamp: Annotated[Timestamp, Meta(description="When the event happened")]
    data: Annotated[Media, Meta(description="The media as the API showed it")]
