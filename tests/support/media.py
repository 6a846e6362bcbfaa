"""Uploading through the API and waiting for the pipeline, as the processing tests do."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.support.client import API, Client
from tests.support.tokens import Caller


async def settled(client: Client, token: str, media_id: str, timeout: float = 60) -> dict[str, Any]:
    """The media once it is ready or failed; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        media: dict[str, Any] = (
            await client.request("GET", f"{API}/{media_id}/", token=token)
        ).json
        if media["status"] in ("ready", "failed"):
            return media
        assert time.monotonic() < deadline, f"media {media_id} still {media['status']}"
        await asyncio.sleep(0.05)


async def upload_settled(
    client: Client, caller: Caller, name: str, content: bytes, timeout: float = 60
) -> dict[str, Any]:
    """Upload a file to the caller's own entity and wait for its processing."""
    response = await client.upload(caller.token, name, content, caller.entity)
    assert response.status == 201, response.body
    return await settled(client, caller.token, response.json["id"], timeout)
