"""Deduplication by checksum: `check/` tells which contents an entity already has, and an
upload (or a batch) with `dedupe=true` answers with the media that has the content instead of
storing it again. Against the shared service (processing on, so failed media are real)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from mediasvc.settings import Settings
from tests.support.client import API, Client, Response, multipart_body
from tests.support.media import settled
from tests.support.service import spool_files, stored_files
from tests.support.tokens import Caller, make_token


def _caller(**claims: Any) -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub, **claims))


def _ref(content: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}


async def _check(client: Client, caller: Caller, files: list[Any], **entity: str) -> Response:
    body = {**(entity or caller.entity), "files": files}
    return await client.request("POST", f"{API}/check/", token=caller.token, json_body=body)


async def _ids(client: Client, caller: Caller, files: list[Any]) -> list[str | None]:
    answer = await _check(client, caller, files)
    assert answer.status == 200, answer.body
    return [result["id"] for result in answer.json["results"]]


async def _count(client: Client, caller: Caller) -> int:
    listing = await client.request("GET", f"{API}/?entity_id={caller.sub}", token=caller.token)
    count: int = listing.json["count"]
    return count


def _originals(settings: Settings, caller: Caller) -> set[str]:
    """The stored originals of the caller's entity (not the variants processing adds)."""
    folder = settings.storage_path / "media" / "user" / caller.sub
    return {path.name for path in stored_files(settings) if path.parent == folder
            and path.name.count(".") == 1}  # fmt: skip


# ---- check/


async def test_check_answers_each_file_in_order(
    client: Client, upload_media: Any, samples: dict[str, bytes]
) -> None:
    caller = _caller()
    photo = await upload_media(caller, "photo.jpg")
    notes = await upload_media(caller, "notes.txt")
    await upload_media(caller, "again.jpg")  # a second copy: the oldest is the answer
    jpg, txt = _ref(samples["jpg"]), _ref(samples["txt"])
    files = [txt, _ref(b"never uploaded"), jpg, {**jpg, "size": jpg["size"] + 1}, jpg,
             {**txt, "sha256": txt["sha256"].upper()}]  # fmt: skip
    answer = await _check(client, caller, files)
    assert answer.status == 200, answer.body
    assert answer.json == {
        "results": [
            {**txt, "id": notes["id"]},
            {**_ref(b"never uploaded"), "id": None},
            {**jpg, "id": photo["id"]},
            {**jpg, "size": jpg["size"] + 1, "id": None},  # same sha256, another size
            {**jpg, "id": photo["id"]},
            {**txt, "id": notes["id"]},  # upper-case hex is the same sha256
        ]
    }
    stranger = _caller()  # the same content in another entity is not this entity's
    assert await _ids(client, stranger, [jpg]) == [None]


async def test_check_is_403_for_an_entity_the_caller_may_not_act_on(
    client: Client, upload_media: Any, samples: dict[str, bytes], admin: Caller
) -> None:
    owner = _caller()
    photo = await upload_media(owner, "photo.jpg")
    files = [_ref(samples["jpg"])]
    refused = await _check(client, _caller(), files, **owner.entity)
    assert (refused.status, refused.json) == (
        403, {"error": "No permission to upload media for this entity"},
    )  # fmt: skip
    granted = _caller(entities=[f"user:{owner.sub}"])
    assert (await _check(client, granted, files, **owner.entity)).json["results"][0]["id"] == (
        photo["id"]
    )
    assert (await _check(client, admin, files, **owner.entity)).status == 200


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ([{"sha256": "abc", "size": 1}], "files.sha256 must be a sha256: 64 hexadecimal digits"),
        ([{"sha256": "g" * 64, "size": 1}], "files.sha256 must be a sha256: 64 hexadecimal digits"),
        ([{"sha256": "a" * 64, "size": 0}], "files.size must be a positive integer"),
        ([{"sha256": "a" * 64}], "files.size is required"),
        ([{"sha256": "a" * 64, "size": 1, "id": None}], "Unknown field 'id'"),
        ([], 'files must be a non-empty list of {"sha256", "size"}'),
        ([{"sha256": "a" * 64, "size": 1}] * 101, "files may hold at most 100 files"),
    ],
)
async def test_check_refuses_bad_requests(
    client: Client, user: Caller, files: list[Any], error: str
) -> None:
    answer = await _check(client, user, files)
    assert (answer.status, answer.json) == (400, {"error": error})


async def test_check_takes_as_many_files_as_the_limit(client: Client, user: Caller) -> None:
    files = [{"sha256": f"{n:064x}", "size": n + 1} for n in range(100)]
    assert await _ids(client, user, files) == [None] * 100


async def test_a_failed_media_is_not_a_copy(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    broken = samples["jpg"][:400]  # sniffs as a JPEG, cannot be decoded
    uploaded = await client.upload(user.token, "broken.jpg", broken, user.entity)
    assert uploaded.status == 201, uploaded.body
    assert (await settled(client, user.token, uploaded.json["id"]))["status"] == "failed"
    assert await _ids(client, user, [_ref(broken)]) == [None]
    again = await client.upload(user.token, "broken.jpg", broken, {**user.entity, "dedupe": "1"})
    assert again.status == 201 and again.json["id"] != uploaded.json["id"]


# ---- dedupe=true on uploads


@pytest.mark.parametrize("fields_first", [True, False])
async def test_a_deduplicated_upload_answers_200_with_the_media_and_stores_nothing(
    client: Client,
    settings: Settings,
    upload_media: Any,
    samples: dict[str, bytes],
    fields_first: bool,
) -> None:
    caller = _caller()
    photo = await upload_media(caller, "photo.jpg", title="First")
    files = _originals(settings, caller)
    fields = {**caller.entity, "dedupe": "true", "title": "Second"}
    again = await client.upload(
        caller.token, "copy.jpg", samples["jpg"], fields, fields_first=fields_first
    )
    assert again.status == 200, again.body
    assert again.json["id"] == photo["id"] and again.json["title"] == "First"
    assert "Location" not in again.headers
    assert await _count(client, caller) == 1
    assert _originals(settings, caller) == files and spool_files(settings) == []
    assert again.json["job"]["id"] == photo["job"]["id"]  # no record, no file, no new job
    other = await client.upload(
        caller.token, "other.png", samples["png"], fields, fields_first=fields_first
    )
    assert other.status == 201 and other.json["id"] != photo["id"]
    duplicate = await client.upload(caller.token, "copy.jpg", samples["jpg"], caller.entity)
    assert duplicate.status == 201  # without dedupe the same content is stored again
    assert await _count(client, caller) == 3


async def test_dedupe_must_be_a_boolean(client: Client, user: Caller, samples: Any) -> None:
    answer = await client.upload(
        user.token, "a.jpg", samples["jpg"], {**user.entity, "dedupe": "maybe"}
    )
    assert (answer.status, answer.json) == (400, {"error": "dedupe must be true or false"})


async def _batch(client: Client, caller: Caller, files: Any, fields_first: bool) -> Response:
    body, content_type = multipart_body(
        {**caller.entity, "dedupe": "on"}, files, fields_first=fields_first
    )
    return await client.request(
        "POST", f"{API}/batch_upload/", token=caller.token, body=body,
        headers={"Content-Type": content_type},
    )  # fmt: skip


@pytest.mark.parametrize("fields_first", [True, False])
async def test_a_deduplicated_batch_lists_what_the_entity_had(
    client: Client,
    settings: Settings,
    upload_media: Any,
    samples: dict[str, bytes],
    fields_first: bool,
) -> None:
    caller = _caller()
    photo = await upload_media(caller, "photo.jpg")
    files = [
        ("files", "copy.jpg", samples["jpg"]),
        ("files", "new.png", samples["png"]),
        ("files", "tool.exe", b"MZ\x90\x00"),
    ]
    answer = await _batch(client, caller, files, fields_first)
    assert answer.status == 201, answer.body
    result = answer.json
    assert [m["filename"] for m in result["created"]] == ["new.png"]
    assert result["existing"] == [
        {"id": photo["id"], "filename": "photo.jpg", "status": photo["status"]}
    ]
    assert result["errors"] == [
        {"filename": "tool.exe", "error": "File extension 'exe' is not allowed"}
    ]
    assert result["summary"] == {"total": 3, "successful": 2, "failed": 1, "existing": 1}
    assert await _count(client, caller) == 2
    stored = _originals(settings, caller)
    assert len(stored) == 2
    had = await _batch(client, caller, files[:2], fields_first)
    assert had.status == 200 and "Location" not in had.headers  # nothing new
    assert had.json["created"] == [] and len(had.json["existing"]) == 2
    assert had.json["summary"] == {"total": 2, "successful": 2, "failed": 0, "existing": 2}
    assert _originals(settings, caller) == stored and spool_files(settings) == []
    assert await _count(client, caller) == 2
