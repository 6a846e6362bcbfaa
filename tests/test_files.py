"""Local storage serves its files with the right headers, ranges and signatures."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.client import Client
from tests.support.media import Uploader
from tests.support.tokens import Caller


@pytest.mark.parametrize(
    ("ext", "content_type", "attachment"),
    [
        ("jpg", "image/jpeg", False),
        ("png", "image/png", False),
        ("mp4", "video/mp4", False),
        ("mp3", "audio/mpeg", False),
        ("svg", "image/svg+xml", True),
        ("pdf", "application/pdf", True),
        ("txt", "text/plain", True),
    ],
)
async def test_file_headers(
    client: Client,
    user: Caller,
    samples: dict[str, bytes],
    ext: str,
    content_type: str,
    attachment: bool,
    upload_media: Uploader,
) -> None:
    content = samples[ext]
    media = await upload_media(user, f"x.{ext}", content)
    response = await client.request("GET", media["url"])
    assert response.status == 200
    assert response.body == content
    assert response.headers["Content-Type"] == content_type
    assert int(response.headers["Content-Length"]) == len(content)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"]
    disposition = response.headers.get("Content-Disposition", "")
    assert disposition.startswith("attachment") == attachment


async def test_range_and_etag(
    client: Client, user: Caller, samples: dict[str, bytes], upload_media: Uploader
) -> None:
    content = samples["mp4"]
    media = await upload_media(user, "clip.mp4", content)
    partial = await client.request("GET", media["url"], headers={"Range": "bytes=10-99"})
    assert partial.status == 206
    assert partial.body == content[10:100]
    assert partial.headers["Content-Range"] == f"bytes 10-99/{len(content)}"
    tail = await client.request("GET", media["url"], headers={"Range": "bytes=-5"})
    assert tail.body == content[-5:]
    etag = partial.headers["ETag"]
    cached = await client.request("GET", media["url"], headers={"If-None-Match": etag})
    assert cached.status == 304
    unsatisfiable = await client.request(
        "GET", media["url"], headers={"Range": f"bytes={len(content) + 10}-"}
    )
    assert unsatisfiable.status == 416
    head = await client.request("HEAD", media["url"])
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(content)


async def test_signature_is_required(client: Client, user: Caller, upload_media: Uploader) -> None:
    media = await upload_media(user, "a.jpg")
    parts = urlsplit(media["url"])
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = dict(p.split("=", 1) for p in parts.query.split("&"))
    for url in (
        base,
        f"{base}?expires={query['expires']}&sig=AAAA",
        f"{base}?expires={int(query['expires']) + 1}&sig={query['sig']}",
        f"{base}?expires=1000&sig={query['sig']}",
        f"{base}?expires=abc&sig={query['sig']}",
    ):
        response = await client.request("GET", url)
        assert response.status == 403, url
        assert response.json == {"error": "Invalid or expired file URL"}


async def test_unknown_file_is_404(client: Client) -> None:
    response = await client.request("GET", "/files/media/none.jpg")
    assert response.status in (403, 404)
    assert set(response.json) == {"error"}


async def test_traversal_is_refused(client: Client, service: Any) -> None:
    store = service.context.blobs
    key = "../secrets/jwt_secret"
    url = f"/files/{key}?{store.signer.query(key)}"
    response = await client.request("GET", url)
    assert response.status in (403, 404)
    assert b"test-secret" not in response.body


async def test_non_ascii_signature_is_403(client: Client) -> None:
    response = await client.request("GET", "/files/anything.jpg?expires=99999999999&sig=%C3%A9")
    assert response.status == 403
    assert response.json == {"error": "Invalid or expired file URL"}


async def test_unsatisfiable_range_is_json(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    media = await upload_media(user, "a.pdf")
    response = await client.request("GET", media["url"], headers={"Range": "bytes=100000-"})
    assert response.status == 416
    assert response.json == {"error": "Requested range not satisfiable"}
