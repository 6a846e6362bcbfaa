"""Presigned uploads on both backends: the flow, every rejection, confirm rules, the sweep."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.support.client import API, Client
from tests.support.media import settled
from tests.support.service import Backend
from tests.support.tokens import Caller, make_token


def _caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


def _request(
    caller: Caller, filename: str, content_type: str, size: int, **extra: Any
) -> dict[str, Any]:
    return {
        "filename": filename,
        "content_type": content_type,
        "entity_type": "user",
        "entity_id": caller.sub,
        "file_size": size,
        **extra,
    }


async def _presign(client: Client, caller: Caller, body: dict[str, Any]) -> Any:
    return await client.request(
        "POST", f"{API}/presigned_upload/", token=caller.token, json_body=body
    )


async def _put(
    client: Client, answer: dict[str, Any], content: bytes, headers: dict[str, str] | None = None
) -> int:
    """A plain HTTP PUT to the URL we were given (as a browser's fetch would do)."""
    response = await client.request(
        "PUT", answer["upload_url"], body=content, headers=headers or answer["upload_headers"]
    )
    return response.status


async def _confirm(client: Client, caller: Caller, media_id: str) -> Any:
    return await client.request("POST", f"{API}/{media_id}/confirm_upload/", token=caller.token)


async def test_full_presigned_flow(backend: Backend, samples: dict[str, bytes]) -> None:
    client, caller = backend.client, _caller()
    content = samples["mp4"]
    answer = (
        await _presign(
            client, caller, _request(caller, "clip.mp4", "video/mp4", len(content), title="T")
        )
    ).json
    assert set(answer) == {"upload_url", "upload_headers", "media_id", "storage_key", "expires_at"}
    assert answer["upload_headers"] == {"Content-Type": "video/mp4"}
    assert answer["storage_key"] == f"media/user/{caller.sub}/{answer['media_id']}.mp4"
    assert answer["expires_at"].endswith("Z")
    pending = (await client.request("GET", f"{API}/{answer['media_id']}/", token=caller.token)).json
    assert pending["status"] == "pending" and pending["title"] == "T"
    assert await _put(client, answer, content) == 200
    confirmed = await _confirm(client, caller, answer["media_id"])
    assert confirmed.status == 200, confirmed.body
    assert confirmed.json["id"] == answer["media_id"]
    assert confirmed.json["status"] == "processing"
    again = await _confirm(client, caller, answer["media_id"])
    assert again.status == 200 and again.json["job"]["id"] == confirmed.json["job"]["id"]
    media = await settled(client, caller.token, answer["media_id"])
    assert media["status"] == "ready", media["error"]
    assert {v["name"] for v in media["variants"]} == {"thumbnail", "optimized"}
    assert (await client.request("GET", media["url"])).body == content


async def test_document_is_ready_at_confirm(backend: Backend, samples: dict[str, bytes]) -> None:
    client, caller = backend.client, _caller()
    answer = (
        await _presign(client, caller, _request(caller, "n.txt", "text/plain", len(samples["txt"])))
    ).json
    assert await _put(client, answer, samples["txt"]) == 200
    confirmed = await _confirm(client, caller, answer["media_id"])
    assert confirmed.json["status"] == "ready"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"filename": "x.exe"}, 400, "File extension 'exe' is not allowed"),
        (
            {"content_type": "text/html"},
            400,
            "Content type 'text/html' does not match the extension 'jpg'",
        ),
        (
            {"file_size": 10 * 1024 * 1024 + 1},
            413,
            "File size exceeds maximum allowed size of 10.0MB for image files",
        ),
        ({"file_size": 0}, 400, "file_size must be a positive integer"),
        ({"file_size": "12"}, 400, "file_size must be a positive integer"),
        ({"file_size": True}, 400, "file_size must be a positive integer"),
        ({"entity_id": "nope"}, 400, "entity_id must be a UUID"),
        ({"entity_type": "service"}, 403, "No permission to upload media for this entity"),
        ({"filename": None}, 400, "filename is required"),
        ({"status": "ready"}, 400, "Unknown field 'status'"),
    ],
)
async def test_presign_refusals_create_nothing(
    backend: Backend, body: dict[str, Any], status: int, message: str
) -> None:
    client, caller = backend.client, _caller()
    request = {**_request(caller, "a.jpg", "image/jpeg", 1000), **body}
    response = await _presign(client, caller, request)
    assert response.status == status
    assert response.json == {"error": message}
    listing = await client.request(
        "GET", f"{API}/?entity_id={caller.sub}&status=pending", token=caller.token
    )
    assert listing.json["count"] == 0


async def test_confirm_without_upload_is_409(backend: Backend) -> None:
    client, caller = backend.client, _caller()
    answer = (await _presign(client, caller, _request(caller, "a.jpg", "image/jpeg", 100))).json
    response = await _confirm(client, caller, answer["media_id"])
    assert response.status == 409
    assert response.json == {"error": "upload not found"}


async def test_confirm_rejects_wrong_content(backend: Backend, samples: dict[str, bytes]) -> None:
    client, caller = backend.client, _caller()
    content = b"this is not a jpeg at all" * 10
    answer = (
        await _presign(client, caller, _request(caller, "a.jpg", "image/jpeg", len(content)))
    ).json
    assert await _put(client, answer, content) == 200
    response = await _confirm(client, caller, answer["media_id"])
    assert response.status == 400
    assert response.json["error"].startswith("File content (text/plain) does not match")
    store = backend.service.context.blobs
    assert not await store.exists(answer["storage_key"])
    media = (await client.request("GET", f"{API}/{answer['media_id']}/", token=caller.token)).json
    assert media["status"] == "failed" and media["error"] == response.json["error"]
    assert (await _confirm(client, caller, answer["media_id"])).status == 400  # same answer again


async def test_confirm_rejects_wrong_size_on_s3(s3_service: Any, samples: dict[str, bytes]) -> None:
    """S3 takes whatever size the client PUTs; confirm catches the difference."""
    client, caller = Client(f"http://127.0.0.1:{s3_service.port}"), _caller()
    answer = (await _presign(client, caller, _request(caller, "a.png", "image/png", 10))).json
    assert await _put(client, answer, samples["png"]) == 200
    response = await _confirm(client, caller, answer["media_id"])
    assert response.status == 400
    assert (
        response.json["error"]
        == f"Uploaded size {len(samples['png'])} does not match the declared size 10"
    )
    assert not await s3_service.context.blobs.exists(answer["storage_key"])


async def test_only_the_uploader_or_an_admin_confirms(
    backend: Backend, samples: dict[str, bytes], admin: Caller
) -> None:
    client = backend.client
    service_id = str(uuid.uuid4())
    uploader = make_token(str(uuid.uuid4()), entities=[f"service:{service_id}"])
    colleague = make_token(str(uuid.uuid4()), entities=[f"service:{service_id}"])
    body = {"filename": "a.png", "content_type": "image/png", "entity_type": "service",
            "entity_id": service_id, "file_size": len(samples["png"])}  # fmt: skip
    answer = (
        await client.request("POST", f"{API}/presigned_upload/", token=uploader, json_body=body)
    ).json
    assert await _put(client, answer, samples["png"]) == 200
    path = f"{API}/{answer['media_id']}/confirm_upload/"
    assert (await client.request("POST", path, token=colleague)).status == 403
    assert (await client.request("POST", path, token=_caller().token)).status == 404
    assert (await client.request("POST", path, token=admin.token)).status == 200


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_tampered_presigned_puts_are_refused(
    backend: Backend, samples: dict[str, bytes]
) -> None:
    client, caller = backend.client, _caller()
    content = samples["jpg"]
    answer = (
        await _presign(client, caller, _request(caller, "a.jpg", "image/jpeg", len(content)))
    ).json
    signature_name = "X-Amz-Signature" if backend.name == "s3" else "sig"
    forged = {**answer, "upload_url": _tamper(answer["upload_url"], **{signature_name: "0" * 64})}
    assert await _put(client, forged, content) == 403
    assert await _put(client, answer, content, {"Content-Type": "text/plain"}) in (400, 403)
    assert not await backend.service.context.blobs.exists(answer["storage_key"])


async def test_local_put_rules(service: Any, client: Client, samples: dict[str, bytes]) -> None:
    caller = _caller()
    content = samples["jpg"]
    answer = (
        await _presign(client, caller, _request(caller, "a.jpg", "image/jpeg", len(content)))
    ).json
    store = service.context.blobs
    expired = store.presign_upload(
        answer["storage_key"], "image/jpeg", len(content), -5, client.base
    )
    assert await _put(client, {**answer, "upload_url": expired.url}, content) == 403
    bigger = _tamper(answer["upload_url"], size=str(len(content) + 1))
    assert await _put(client, {**answer, "upload_url": bigger}, content) == 403  # size is signed
    too_long = await client.request(
        "PUT", answer["upload_url"], body=content + b"x" * 100, headers=answer["upload_headers"]
    )
    assert too_long.status == 413
    too_short = await client.request(
        "PUT", answer["upload_url"], body=content[:-1], headers=answer["upload_headers"]
    )
    assert too_short.status == 400
    assert not await store.exists(answer["storage_key"])
    assert await _put(client, answer, content) == 200
    second = await client.request(
        "PUT", answer["upload_url"], body=content, headers=answer["upload_headers"]
    )
    assert second.status == 409
    assert second.json == {"error": "This upload URL was already used"}


async def test_sweep_removes_expired_pending_uploads(
    backend: Backend, samples: dict[str, bytes]
) -> None:
    client, caller = backend.client, _caller()
    context = backend.service.context
    uploaded = (
        await _presign(client, caller, _request(caller, "a.png", "image/png", len(samples["png"])))
    ).json
    assert await _put(client, uploaded, samples["png"]) == 200
    never = (await _presign(client, caller, _request(caller, "b.png", "image/png", 10))).json
    fresh = (await _presign(client, caller, _request(caller, "c.png", "image/png", 10))).json
    for answer in (uploaded, never):
        await context.repository.update(answer["media_id"], {"upload_expires_at": 1000})
    result = await context.presigned.sweep()
    assert result["expired_uploads"] >= 2
    for answer in (uploaded, never):
        gone = await client.request("GET", f"{API}/{answer['media_id']}/", token=caller.token)
        assert gone.status == 404
    assert not await context.blobs.exists(uploaded["storage_key"])
    still = await client.request("GET", f"{API}/{fresh['media_id']}/", token=caller.token)
    assert still.status == 200 and still.json["status"] == "pending"


async def test_pending_media_cannot_be_downloaded_or_processed(backend: Backend) -> None:
    client, caller = backend.client, _caller()
    answer = (await _presign(client, caller, _request(caller, "a.jpg", "image/jpeg", 100))).json
    path = f"{API}/{answer['media_id']}"
    assert (await client.request("GET", f"{path}/download/", token=caller.token)).status == 409
    process = await client.request(
        "POST", f"{path}/process/", token=caller.token, json_body={"operations": ["thumbnail"]}
    )
    assert process.status == 409


async def test_content_types_compare_case_insensitively(backend: Backend) -> None:
    client, caller = backend.client, _caller()
    response = await _presign(client, caller, _request(caller, "a.doc", "application/CDFV2", 100))
    assert response.status == 201, response.body
