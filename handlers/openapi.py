"""The OpenAPI document of the API: generated from this server's routes and settings."""

from __future__ import annotations

from typing import Any

import tornado.web

from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.media import API
from mediasvc.openapi import Answer, Operation, PathItem, openapi_document
from mediasvc.wire import encode


class OpenApiHandler(BaseHandler):
    """GET the OpenAPI 3.1 document (no authentication: it describes, it reveals nothing)."""

    openapi = PathItem(
        f"{API}/openapi.json",
        {
            "get": Operation(
                "getOpenApi",
                "This document",
                "operations",
                {200: Answer("OpenAPI 3.1", {"type": "object"})},
                public=True,
            )
        },
    )

    async def get(self) -> None:
        self.finish(
            encode({**self.document(self.application), "servers": [{"url": self.base_url}]})
        )

    @staticmethod
    def document(application: tornado.web.Application) -> dict[str, Any]:
        """The document of this application, made once (its routes and settings are fixed)."""
        made: dict[str, Any] | None = application.settings.get("openapi_document")
        if made is None:
            handlers = [rule.target for rule in application.wildcard_router.rules]
            made = openapi_document(application.settings["context"].settings, handlers)
            application.settings["openapi_document"] = made
        return made


routes = [(rf"{API}/openapi.json", OpenApiHandler)]
