"""Deduplication by checksum: which files an entity already has, asked before uploading."""

from __future__ import annotations

from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.media import API
from mediasvc.models.uploads import CheckAnswer, CheckRequest
from mediasvc.openapi import Answer, Operation, PathItem


class CheckHandler(BaseHandler):
    """POST {entity_type, entity_id, files: [{sha256, size}]}: the media of each content."""

    openapi = PathItem(
        f"{API}/check/",
        {
            "post": Operation(
                "checkMedia",
                "Which of these files (by sha256 and size) the entity already has",
                "uploads",
                {200: Answer("One result per file, in the order asked", CheckAnswer)},
                errors=(400, 401, 403, 413, 503),
                body=CheckRequest,
            )
        },
    )

    async def post(self) -> None:
        principal = self.authenticate()
        request = self.decode(CheckRequest)
        self.write_model(await self.ctx.media.check_contents(principal, request))


routes = [(rf"{API}/check/?", CheckHandler)]
