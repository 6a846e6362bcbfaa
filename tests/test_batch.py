"""Batch upload: each file stands alone; one bad file is reported while the others are created."""

from __future__ import annotations

import uuid

from mediasvc.settings import Settings
from tests.support.client import API, Client, multipart_body
from tests.support.service import spool_files
from tests.support.tokens import Caller


async def _batch(
    client: Client, caller: Caller, files: list[tuple[str, str, bytes]], **fields: str
) -> object:
    body, content_type = multipart_body({**caller.entity, **fields}, files)
    return await client.request(
        "POST",
        f"{API}/batch_upload/",
        token=caller.token,
        body=body,
        headers={"Content-Type": content_type},
    )


async def test_mixed_batch(
    client: Client, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    files = [
        ("files", "one.jpg", samples["jpg"]),
        ("files", "virus.exe", b"MZ\x90\x00"),
        ("files", "two.pdf", samples["pdf"]),
        ("files", "fake.png", samples["txt"]),
        ("files", "empty.jpg", b""),
        ("files", "huge.jpg", samples["jpg"] + b"\0" * (10 * 1024 * 1024)),
        ("files", "../../three.txt", samples["txt"]),
    ]
    response = await _batch(client, user, files)
    assert response.status == 201, response.body  # type: ignore[attr-defined]
    result = response.json  # type: ignore[attr-defined]
    assert [m["filename"] for m in result["created"]] == ["one.jpg", "two.pdf", "three.txt"]
    assert {m["status"] for m in result["created"]} <= {"processing", "ready"}
    assert result["errors"] == [
        {"filename": "virus.exe", "error": "File extension 'exe' is not allowed"},
        {
            "filename": "fake.png",
            "error": "File content (text/plain) does not match its extension 'png'",
        },
        {"filename": "empty.jpg", "error": "The submitted file is empty"},
        {
            "filename": "huge.jpg",
            "error": "File size exceeds maximum allowed size of 10.0MB for image files",
        },
    ]
    assert result["summary"] == {"total": 7, "successful": 3, "failed": 4}
    listing = await client.request("GET", f"{API}/?entity_id={user.sub}", token=user.token)
    assert listing.json["count"] == 3
    assert spool_files(settings) == []


async def test_batch_of_only_bad_files_is_400(client: Client, user: Caller) -> None:
    response = await _batch(client, user, [("files", "a.exe", b"x"), ("files", "b.bat", b"y")])
    assert response.status == 400  # type: ignore[attr-defined]
    body = response.json  # type: ignore[attr-defined]
    assert body["error"] == "No file could be uploaded"
    assert body["summary"] == {"total": 2, "successful": 0, "failed": 2}


async def test_batch_request_level_refusals(
    client: Client, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    too_many = [("files", f"f{i}.txt", samples["txt"]) for i in range(21)]
    response = await _batch(client, user, too_many)
    assert response.status == 400  # type: ignore[attr-defined]
    other = Caller(str(uuid.uuid4()), user.token)
    forbidden = await _batch(client, other, [("files", "a.jpg", samples["jpg"])])
    assert forbidden.status == 403  # type: ignore[attr-defined]
    wrong_field = await _batch(client, user, [("file", "a.jpg", samples["jpg"])])
    assert wrong_field.status == 400  # type: ignore[attr-defined]
    extra = await _batch(client, user, [("files", "a.jpg", samples["jpg"])], title="x")
    assert extra.status == 400  # type: ignore[attr-defined]
    listing = await client.request("GET", f"{API}/?entity_id={user.sub}", token=user.token)
    assert listing.json["count"] == 0
    assert spool_files(settings) == []


async def test_a_full_batch_of_max_batch_files(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    files = [("files", f"f{i}.txt", samples["txt"]) for i in range(20)]
    response = await _batch(client, user, files)
    assert response.status == 201, response.body  # type: ignore[attr-defined]
    assert response.json["summary"]["successful"] == 20  # type: ignore[attr-defined]
