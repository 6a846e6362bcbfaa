"""tus requests against the running service: headers, metadata and whole uploads."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tests.support.client import API, Client, Response
from tests.support.tokens import Caller

TUS = f"{API}/tus/"
OCTETS = "application/offset+octet-stream"


def metadata(**values: str) -> str:
    """An `Upload-Metadata` header: each value base64-encoded."""
    return ",".join(f"{key} {base64.b64encode(v.encode()).decode()}" for key, v in values.items())


def checksum(algorithm: str, data: bytes) -> str:
    """An `Upload-Checksum` header for `data`."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm} {base64.b64encode(digest).decode()}"


def tus_headers(**headers: str) -> dict[str, str]:
    """`Tus-Resumable: 1.0.0` and the given headers (underscores become dashes)."""
    return {"Tus-Resumable": "1.0.0", **{k.replace("_", "-"): v for k, v in headers.items()}}


def path_of(location: str) -> str:
    """The path of an absolute `Location`."""
    return "/" + location.split("/", 3)[3]


async def create(
    client: Client,
    caller: Caller,
    filename: str,
    length: int | None,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Response:
    """POST a new upload of `filename` to the caller's own entity (`length` None: deferred)."""
    extra = {"Upload-Metadata": metadata(filename=filename, **caller.entity, **fields)}
    if length is None:
        extra["Upload-Defer-Length"] = "1"
    else:
        extra["Upload-Length"] = str(length)
    if body is not None:
        extra["Content-Type"] = OCTETS
    return await client.request(
        "POST", TUS, token=caller.token, body=body, headers=tus_headers(**extra, **(headers or {}))
    )


async def patch(
    client: Client, token: str, path: str, offset: int, data: bytes, **headers: str
) -> Response:
    """One PATCH of `data` at `offset`."""
    all_headers = tus_headers(Upload_Offset=str(offset), Content_Type=OCTETS, **headers)
    return await client.request("PATCH", path, token=token, body=data, headers=all_headers)


async def head(client: Client, token: str, path: str) -> Response:
    return await client.request("HEAD", path, token=token, headers=tus_headers())


async def upload_whole(
    client: Client, caller: Caller, filename: str, content: bytes, chunk: int, **fields: str
) -> dict[str, Any]:
    """Create an upload and PATCH `content` in `chunk`-byte pieces; the media it made."""
    created = await create(client, caller, filename, len(content), **fields)
    assert created.status == 201, created.body
    path = path_of(created.headers["Location"])
    offset = 0
    while offset < len(content):
        answer = await patch(client, caller.token, path, offset, content[offset : offset + chunk])
        assert answer.status == 204, answer.body
        offset = int(answer.headers["Upload-Offset"])
    media_id = path.rstrip("/").rsplit("/", 1)[-1]
    media: dict[str, Any] = (
        await client.request("GET", f"{API}/{media_id}/", token=caller.token)
    ).json
    return media
