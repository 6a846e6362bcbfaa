"""The body of a delivery: `{"type", "timestamp", "data"}`, data the media as the API shows it.

The body is made once, when the delivery is (or, for a removed media, when its event is
written): every attempt then sends the very same bytes, which the signature covers.
"""

from __future__ import annotations

from mediasvc.models.media import Media
from mediasvc.models.webhooks import WebhookPayload
from mediasvc.services.presenter import iso
from mediasvc.webhooks.events import Event
from mediasvc.wire import encode


def payload_body(event: Event, data: Media) -> str:
    """The JSON text every delivery of `event` sends."""
    payload = WebhookPayload(type=event.type, timestamp=iso(event.at), data=data)
    return encode(payload).decode()
