"""The OpenAPI document of the API."""

from __future__ import annotations

from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.media import API
from mediasvc.openapi import openapi_document


class OpenApiHandler(BaseHandler):
    """GET the OpenAPI 3.1 document (no authentication: it describes, it reveals nothing)."""

    async def get(self) -> None:
        self.write_json(openapi_document(self.base_url))


routes = [(rf"{API}/openapi.json", OpenApiHandler)]
