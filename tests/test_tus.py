"""tus 1.0.0 resumable uploads, rule by rule, against the live service (both backends)."""

from __future__ import annotations

from tests.support.client import API, Client
from tests.support.media import settled
from tests.support.service import Backend
from tests.support.tokens import Caller
from tests.support.tus import TUS, create, head, patch, path_of, tus_headers, upload_whole


async def test_options_describes_the_server(client: Client) -> None:
    answer = await client.request("OPTIONS", TUS)
    assert answer.status == 204
    assert answer.headers["Tus-Resumable"] == "1.0.0"
    assert answer.headers["Tus-Version"] == "1.0.0"
    extensions = answer.headers["Tus-Extension"].split(",")
    assert {"creation", "creation-with-upload", "creation-defer-length", "termination",
            "expiration", "checksum", "concatenation"} <= set(extensions)  # fmt: skip
    assert answer.headers["Tus-Checksum-Algorithm"] == "sha1,sha256,md5"
    assert int(answer.headers["Tus-Max-Size"]) == 500 * 1024 * 1024


async def test_a_chunked_upload_becomes_a_processed_media(
    backend: Backend, user: Caller, samples: dict[str, bytes]
) -> None:
    content = samples["jpg"]
    media = await upload_whole(backend.client, user, "photo.jpg", content, 700, title="Hi")
    assert media["filename"] == "photo.jpg" and media["title"] == "Hi"
    done = await settled(backend.client, user.token, media["id"])
    assert done["status"] == "ready", done
    assert done["file_size"] == len(content) and done["upload_offset"] == len(content)
    stored = await backend.client.request("GET", done["url"])
    assert stored.body == content
