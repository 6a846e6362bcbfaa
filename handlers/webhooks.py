"""The webhook admin API: endpoints, their secrets, their deliveries (admins only).

Routed before the media routes, whose `{media_id}` would take `webhooks` for a media id."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.media import API
from mediasvc.models.base import Url
from mediasvc.models.webhooks import (
    Delivery,
    DeliveryList,
    DeliveryListParams,
    Webhook,
    WebhookCreate,
    WebhookList,
    WebhookUpdate,
    WebhookWithSecret,
)
from mediasvc.openapi import Answer, Header, Operation, Param, PathItem
from mediasvc.records import now_ms
from mediasvc.services.webhooks import present_delivery, present_endpoint, present_with_secret

WEBHOOKS = f"{API}/webhooks"
WEBHOOK_ID = r"(?P<webhook_id>[^/]+)"
DELIVERY_ID = r"(?P<delivery_id>[^/]+)"
WEBHOOK_ID_PARAM = Param("webhook_id", "path", uuid.UUID, "Anything else is a 404.")
DELIVERY_ID_PARAM = Param("delivery_id", "path", uuid.UUID, "A delivery of this endpoint.")
ERRORS = (401, 403, 404, 503)


class WebhookListHandler(BaseHandler):
    """GET every endpoint; POST registers one (its secret is in this answer only)."""

    openapi = PathItem(
        f"{WEBHOOKS}/",
        {
            "get": Operation(
                "listWebhooks",
                "List the webhook endpoints (oldest first)",
                "webhooks",
                {200: Answer("Every endpoint (at most webhook_max_endpoints)", WebhookList)},
                errors=(401, 403, 503),
            ),
            "post": Operation(
                "createWebhook",
                "Register an endpoint; the answer holds its signing secret, shown only here",
                "webhooks",
                {
                    201: Answer(
                        "Registered",
                        WebhookWithSecret,
                        headers={"Location": Header("The new endpoint", Url, True)},
                    )
                },
                errors=(400, 401, 403, 409, 413, 503),
                body=WebhookCreate,
                body_note="Unknown event types are a 400 that names them",
            ),
        },
    )

    async def get(self) -> None:
        endpoints = await self.ctx.webhooks.list_all(self.authenticate())
        self.write_model(WebhookList(results=[present_endpoint(e) for e in endpoints]))

    async def post(self) -> None:
        principal = self.authenticate()
        endpoint, secret = await self.ctx.webhooks.create(principal, self.decode(WebhookCreate))
        self.set_header("Location", f"{self.base_url}{WEBHOOKS}/{endpoint.id}/")
        self.write_model(present_with_secret(endpoint, secret), status=201)


class WebhookDetailHandler(BaseHandler):
    """GET, PATCH and DELETE one endpoint."""

    openapi = PathItem(
        f"{WEBHOOKS}/{{webhook_id}}/",
        {
            "get": Operation(
                "getWebhook", "Read one endpoint", "webhooks",
                {200: Answer("The endpoint", Webhook)}, errors=ERRORS,
            ),
            "patch": Operation(
                "updateWebhook",
                "Change url, events, enabled or description (enabling clears disabled_reason)",
                "webhooks",
                {200: Answer("The changed endpoint", Webhook)},
                errors=(400, 401, 403, 404, 413, 503),
                body=WebhookUpdate,
                body_note="Read-only or unknown fields are a 400",
            ),
            "delete": Operation(
                "deleteWebhook",
                "Remove the endpoint; its pending deliveries are never sent",
                "webhooks",
                {204: Answer("Removed")},
                errors=ERRORS,
            ),
        },
        params=(WEBHOOK_ID_PARAM,),
    )  # fmt: skip

    async def get(self, webhook_id: str) -> None:
        endpoint = await self.ctx.webhooks.get(self.authenticate(), webhook_id)
        self.write_model(present_endpoint(endpoint))

    async def patch(self, webhook_id: str) -> None:
        principal = self.authenticate()
        patch = self.decode(WebhookUpdate)
        endpoint = await self.ctx.webhooks.update(principal, webhook_id, patch)
        self.write_model(present_endpoint(endpoint))

    async def delete(self, webhook_id: str) -> None:
        await self.ctx.webhooks.delete(self.authenticate(), webhook_id)
        self.no_content()


class RotateSecretHandler(BaseHandler):
    """POST: a new secret, shown once; the previous one signs beside it for a while."""

    openapi = PathItem(
        f"{WEBHOOKS}/{{webhook_id}}/rotate_secret/",
        {
            "post": Operation(
                "rotateWebhookSecret",
                "A new signing secret (shown only here); the previous one keeps signing "
                "beside it for webhook_secret_grace seconds",
                "webhooks",
                {200: Answer("The endpoint with its new secret", WebhookWithSecret)},
                errors=ERRORS,
            )
        },
        params=(WEBHOOK_ID_PARAM,),
    )

    async def post(self, webhook_id: str) -> None:
        principal = self.authenticate()
        endpoint, secret = await self.ctx.webhooks.rotate_secret(principal, webhook_id)
        self.write_model(present_with_secret(endpoint, secret))


class DeliveryListHandler(BaseHandler):
    """GET an endpoint's deliveries, newest first, with their attempts."""

    openapi = PathItem(
        f"{WEBHOOKS}/{{webhook_id}}/deliveries/",
        {
            "get": Operation(
                "listWebhookDeliveries",
                "List the endpoint's deliveries, newest first, with their latest attempts",
                "webhooks",
                {200: Answer("A page of deliveries; `next` goes on", DeliveryList)},
                errors=(400, 401, 403, 404, 503),
                query=DeliveryListParams,
            )
        },
        params=(WEBHOOK_ID_PARAM,),
    )

    async def get(self, webhook_id: str) -> None:
        principal = self.authenticate()
        params = self.decode_query(DeliveryListParams)
        page = await self.ctx.webhooks.deliveries(principal, webhook_id, params)
        following = None
        if page.after is not None:
            query = urlencode({"limit": str(len(page.items)), "cursor": page.after})
            following = f"{self.base_url}{self.request.path}?{query}"
        now = now_ms()
        results = [present_delivery(delivery, now) for delivery in page.items]
        self.write_model(DeliveryList(next=following, results=results))


class RedeliverHandler(BaseHandler):
    """POST sends a delivery again: the same body and webhook-id, new attempts."""

    openapi = PathItem(
        f"{WEBHOOKS}/{{webhook_id}}/deliveries/{{delivery_id}}/redeliver/",
        {
            "post": Operation(
                "redeliverWebhookDelivery",
                "Send the delivery again (same body and webhook-id; a new retry window)",
                "webhooks",
                {202: Answer("Queued: the delivery, pending", Delivery)},
                errors=(401, 403, 404, 409, 503),
            )
        },
        params=(WEBHOOK_ID_PARAM, DELIVERY_ID_PARAM),
    )

    async def post(self, webhook_id: str, delivery_id: str) -> None:
        principal = self.authenticate()
        delivery = await self.ctx.webhooks.redeliver(principal, webhook_id, delivery_id)
        self.write_model(present_delivery(delivery, now_ms()), status=202)


routes = [
    (rf"{WEBHOOKS}/?", WebhookListHandler),
    (rf"{WEBHOOKS}/{WEBHOOK_ID}/rotate_secret/?", RotateSecretHandler),
    (rf"{WEBHOOKS}/{WEBHOOK_ID}/deliveries/?", DeliveryListHandler),
    (rf"{WEBHOOKS}/{WEBHOOK_ID}/deliveries/{DELIVERY_ID}/redeliver/?", RedeliverHandler),
    (rf"{WEBHOOKS}/{WEBHOOK_ID}/?", WebhookDetailHandler),
]
