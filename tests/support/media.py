"""Uploading through the API and waiting for the pipeline, as the processing tests do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Uploader:
    """What the `upload_media` fixture gives: one call uploads a file to the caller's own
    entity, asserts 201 and returns the media, so no test file keeps a copy of its own."""

    client: Client
    samples: Mapping[str, bytes]

    async def __call__(
        self,
        caller: Caller,
        filename: str = "file.jpg",
        content: bytes | None = None,
        *,
        client: Client | None = None,
        **fields: str,
    ) -> dict[str, Any]:
        """`content` is the sample of the filename's extension unless given; `client` is the
        shared one unless given (a service of the test's own); `fields` go on the form."""
        if content is None:
            content = self.samples[filename.rsplit(".", 1)[-1]]
        through = client or self.client
        response = await through.upload(
            caller.token, filename, content, {**caller.entity, **fields}
        )
        assert response.status == 201, response.body
        media: dict[str, Any] = response.json
        return media
