"""tus 1.0.0 resumable uploads, rule by rule, against the live service (local and S3)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from mediasvc.app import Service, start_service
from mediasvc.records import now_ms
from tests.support.client import API, Client
from tests.support.early import read_answer, send_head
from tests.support.media import settled
from tests.support.service import Backend, service_settings, stored_files
from tests.support.tokens import Caller
from tests.support.tus import (
    OCTETS,
    TUS,
    checksum,
    create,
    head,
    metadata,
    patch,
    path_of,
    tus_headers,
    upload_whole,
)

MB = 1024 * 1024


def text(size: int) -> bytes:
    """A plain-text file of `size` bytes (it sniffs as text and needs no processing)."""
    line = b"resumable uploads keep every byte they acknowledged\n"
    return (line * (size // len(line) + 1))[:size]


async def new_upload(
    client: Client, caller: Caller, content: bytes, name: str = "notes.txt"
) -> str:
    created = await create(client, caller, name, len(content))
    assert created.status == 201, created.body
    return path_of(created.headers["Location"])


def media_id_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


async def start_patch(
    port: int, path: str, token: str, length: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent the head of a PATCH from offset 0 of `length` bytes, for a
    test to send the body at its own pace (or not at all)."""
    return await send_head(
        port,
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: {OCTETS}\r\n"
        f"Content-Length: {length}\r\n\r\n",
    )


# ---- discovery, versions, authentication


async def test_options_describes_the_server_without_a_token(client: Client) -> None:
    answer = await client.request("OPTIONS", TUS)
    assert answer.status == 204
    assert answer.headers["Tus-Resumable"] == "1.0.0"
    assert answer.headers["Tus-Version"] == "1.0.0"
    extensions = set(answer.headers["Tus-Extension"].split(","))
    assert {"creation", "creation-with-upload", "creation-defer-length", "termination",
            "expiration", "checksum", "concatenation"} <= extensions  # fmt: skip
    assert answer.headers["Tus-Checksum-Algorithm"] == "sha1,sha256,md5"
    assert int(answer.headers["Tus-Max-Size"]) == 500 * MB


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
async def test_a_wrong_tus_version_is_412_with_tus_version_and_changes_nothing(
    client: Client, user: Caller, version: str | None
) -> None:
    path = await new_upload(client, user, text(10))
    headers = {"Upload-Offset": "0", "Content-Type": OCTETS}
    if version:
        headers["Tus-Resumable"] = version
    answer = await client.request("PATCH", path, token=user.token, body=b"x" * 10, headers=headers)
    assert answer.status == 412, answer.body
    assert answer.headers["Tus-Version"] == "1.0.0"
    assert answer.headers["Tus-Resumable"] == "1.0.0"
    for method in ("HEAD", "DELETE"):
        refused = await client.request(method, path, token=user.token, headers=headers)
        assert refused.status == 412
    posted = await client.request("POST", TUS, token=user.token, headers={"Upload-Length": "1"})
    assert posted.status == 412
    assert (await head(client, user.token, path)).headers["Upload-Offset"] == "0"


async def test_every_request_needs_a_bearer_token(client: Client, user: Caller) -> None:
    path = await new_upload(client, user, text(10))
    for method, target in (("POST", TUS), ("HEAD", path), ("PATCH", path), ("DELETE", path)):
        headers = tus_headers(Upload_Length="10", Upload_Offset="0", Content_Type=OCTETS)
        answer = await client.request(method, target, headers=headers)
        assert answer.status == 401, (method, answer.body)
        assert answer.headers["Tus-Resumable"] == "1.0.0"


# ---- creation


async def test_creation_records_a_pending_media_whose_id_ends_the_location(
    client: Client, user: Caller
) -> None:
    created = await create(client, user, "notes.txt", 1234, title="Draft", display_order="3")
    assert created.status == 201, created.body
    location = created.headers["Location"]
    assert location.startswith(client.base + TUS)
    media_id = media_id_of(location)
    assert uuid.UUID(media_id)
    expires = parsedate_to_datetime(created.headers["Upload-Expires"]).timestamp()
    assert abs(expires - (now_ms() / 1000 + 86400)) < 60
    media = (await client.request("GET", f"{API}/{media_id}/", token=user.token)).json
    assert media["status"] == "pending" and media["upload_offset"] == 0
    assert media["file_size"] == 1234 and media["title"] == "Draft"
    assert media["display_order"] == 3 and media["filename"] == "notes.txt"


@pytest.mark.parametrize(
    ("filename", "status", "message"),
    [
        ("tool.exe", 400, "File extension 'exe' is not allowed"),
        ("noextension", 400, "File name has no extension"),
        ("clip.mp4", 413, "File size exceeds maximum allowed size of 500.0MB for video files"),
        ("photo.jpg", 413, "File size exceeds maximum allowed size of 10.0MB for image files"),
    ],
)
async def test_creation_checks_the_file_like_a_direct_upload(
    client: Client, user: Caller, filename: str, status: int, message: str
) -> None:
    answer = await create(client, user, filename, 600 * MB)
    assert answer.status == status, answer.body
    assert answer.json == {"error": message}


async def test_creation_checks_the_entity_and_the_permission(
    client: Client, user: Caller, other_user: Caller
) -> None:
    foreign = {"entity_type": "user", "entity_id": other_user.sub}
    headers = tus_headers(Upload_Length="10", Upload_Metadata=metadata(filename="a.txt", **foreign))
    answer = await client.request("POST", TUS, token=user.token, headers=headers)
    assert answer.status == 403
    assert answer.json == {"error": "No permission to upload media for this entity"}
    headers = tus_headers(Upload_Length="10", Upload_Metadata=metadata(filename="a.txt"))
    answer = await client.request("POST", TUS, token=user.token, headers=headers)
    assert answer.status == 400 and answer.json == {"error": "entity_type is required"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, "not both"),
        ({"Upload-Defer-Length": "2"}, "Upload-Defer-Length must be 1"),
        ({}, "Upload-Length or Upload-Defer-Length: 1 is required"),
        ({"Upload-Length": "-4"}, "Upload-Length must be a non-negative integer"),
        ({"Upload-Length": "0"}, "The submitted file is empty"),
        ({"Upload-Length": "9", "Upload-Metadata": "filename ***"}, "not base64"),
        ({"Upload-Length": "9", "Upload-Metadata": "filename"}, "must carry the filename"),
        ({"Upload-Length": "9", "Upload-Concat": "sideways"}, "Upload-Concat must be"),
    ],
)
async def test_malformed_creation_headers_are_400(
    client: Client, user: Caller, headers: dict[str, str], message: str
) -> None:
    headers.setdefault("Upload-Metadata", metadata(filename="a.txt", **user.entity))
    answer = await client.request("POST", TUS, token=user.token, headers=tus_headers(**headers))
    assert answer.status == 400, answer.body
    assert message in answer.json["error"]


async def test_unknown_metadata_keys_are_refused_but_client_hints_are_not(
    client: Client, user: Caller
) -> None:
    fields = {"filename": "a.txt", **user.entity}
    answer = await client.request(
        "POST", TUS, token=user.token,
        headers=tus_headers(Upload_Length="5", Upload_Metadata=metadata(**fields, colour="red")),
    )  # fmt: skip
    assert answer.status == 400 and "colour" in answer.json["error"]
    answer = await client.request(
        "POST", TUS, token=user.token,
        headers=tus_headers(Upload_Length="5", Upload_Metadata=metadata(**fields, filetype="x")),
    )  # fmt: skip
    assert answer.status == 201, answer.body


async def test_creation_with_upload_takes_the_first_bytes(client: Client, user: Caller) -> None:
    content = text(3000)
    created = await create(client, user, "notes.txt", len(content), body=content[:1000])
    assert created.status == 201, created.body
    assert created.headers["Upload-Offset"] == "1000"
    path = path_of(created.headers["Location"])
    answer = await patch(client, user.token, path, 1000, content[1000:])
    assert answer.status == 204 and answer.headers["Upload-Offset"] == "3000"
    media = await settled(client, user.token, media_id_of(path))
    assert media["status"] == "ready" and media["file_size"] == 3000


async def test_creation_with_upload_checks_the_first_bytes_against_their_checksum(
    client: Client, user: Caller
) -> None:
    content = text(3000)
    good = await create(
        client, user, "notes.txt", len(content), body=content[:1000],
        headers={"Upload-Checksum": checksum("sha256", content[:1000])},
    )  # fmt: skip
    assert good.status == 201 and good.headers["Upload-Offset"] == "1000", good.body
    bad = await create(
        client, user, "notes.txt", len(content), body=content[:1000],
        headers={"Upload-Checksum": checksum("sha256", b"other")},
    )  # fmt: skip
    assert bad.status == 460, bad.body
    assert bad.json == {"error": "The chunk does not match its Upload-Checksum"}
    path = path_of(bad.headers["Location"])  # the upload stands, with none of those bytes
    assert (await head(client, user.token, path)).headers["Upload-Offset"] == "0"
    answer = await patch(client, user.token, path, 0, content)
    assert answer.status == 204 and answer.headers["Upload-Offset"] == "3000"
    media = await settled(client, user.token, media_id_of(path))
    assert media["status"] == "ready"
    assert (await client.request("GET", media["url"])).body == content
    before = await client.request("GET", f"{API}/", token=user.token)
    unknown = await create(
        client, user, "notes.txt", len(content), body=content[:1000],
        headers={"Upload-Checksum": "crc32 AAAA"},
    )  # fmt: skip
    assert unknown.status == 400 and "Location" not in unknown.headers
    after = await client.request("GET", f"{API}/", token=user.token)
    assert after.json["count"] == before.json["count"]  # refused before anything was made


# ---- HEAD and PATCH


async def test_head_reports_offset_length_and_metadata(client: Client, user: Caller) -> None:
    path = await new_upload(client, user, text(100))
    assert (await patch(client, user.token, path, 0, text(40))).status == 204
    answer = await head(client, user.token, path)
    assert answer.status == 200
    assert answer.headers["Upload-Offset"] == "40" and answer.headers["Upload-Length"] == "100"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Upload-Metadata"] == metadata(filename="notes.txt", **user.entity)
    assert "Upload-Expires" in answer.headers
    media = (await client.request("GET", f"{API}/{media_id_of(path)}/", token=user.token)).json
    assert media["status"] == "pending" and media["upload_offset"] == 40


async def test_unknown_and_foreign_uploads_are_404(
    client: Client, user: Caller, other_user: Caller
) -> None:
    path = await new_upload(client, user, text(10))
    for target, token in ((f"{TUS}{uuid.uuid4()}", user.token), (path, other_user.token)):
        assert (await head(client, token, target)).status == 404
        assert (await patch(client, token, target, 0, b"abc")).status == 404
        deleted = await client.request("DELETE", target, token=token, headers=tus_headers())
        assert deleted.status == 404


async def test_patch_rules_415_409_400_413(client: Client, user: Caller) -> None:
    path = await new_upload(client, user, text(100))
    wrong_type = await client.request(
        "PATCH", path, token=user.token, body=b"x",
        headers=tus_headers(Upload_Offset="0", Content_Type="application/octet-stream"),
    )  # fmt: skip
    assert wrong_type.status == 415
    assert wrong_type.json == {"error": "Content-Type must be application/offset+octet-stream"}
    assert (await patch(client, user.token, path, 0, text(30))).status == 204
    mismatch = await patch(client, user.token, path, 10, text(5))
    assert mismatch.status == 409, mismatch.body
    assert "Upload-Expires" in mismatch.headers
    missing = await client.request(
        "PATCH", path, token=user.token, body=b"x", headers=tus_headers(Content_Type=OCTETS)
    )
    assert missing.status == 400 and "Upload-Offset" in missing.json["error"]
    too_long = await patch(client, user.token, path, 30, text(71))
    assert too_long.status == 413, too_long.body
    assert (await head(client, user.token, path)).headers["Upload-Offset"] == "30"


async def test_a_chunk_over_the_chunk_limit_is_413_before_its_body(
    service: Service, client: Client, user: Caller
) -> None:
    path = await new_upload(client, user, text(10))
    limit = service.context.settings.tus_max_chunk_size
    reader, writer = await start_patch(service.port, path, user.token, limit + 1)
    try:
        answer = await read_answer(reader)
    finally:
        writer.close()
    assert answer.status == 413
    assert answer.headers["tus-resumable"] == "1.0.0"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
async def test_checksums_are_verified_and_a_mismatch_is_460_and_discarded(
    client: Client, user: Caller, algorithm: str
) -> None:
    content = text(4000)
    path = await new_upload(client, user, content)
    good = await patch(
        client,
        user.token,
        path,
        0,
        content[:2000],
        Upload_Checksum=checksum(algorithm, content[:2000]),
    )
    assert good.status == 204 and good.headers["Upload-Offset"] == "2000"
    bad = await patch(
        client,
        user.token,
        path,
        2000,
        content[2000:],
        Upload_Checksum=checksum(algorithm, b"other"),
    )
    assert bad.status == 460, bad.body
    assert bad.json == {"error": "The chunk does not match its Upload-Checksum"}
    assert (await head(client, user.token, path)).headers["Upload-Offset"] == "2000"
    unknown = await patch(
        client, user.token, path, 2000, content[2000:], Upload_Checksum="crc32 AAAA"
    )
    assert unknown.status == 400
    last = await patch(
        client,
        user.token,
        path,
        2000,
        content[2000:],
        Upload_Checksum=checksum(algorithm, content[2000:]),
    )
    assert last.status == 204 and last.headers["Upload-Offset"] == "4000"
    media = await settled(client, user.token, media_id_of(path))
    assert media["status"] == "ready"
    stored = await client.request("GET", media["url"])
    assert stored.body == content


async def test_a_deferred_length_is_declared_by_a_later_patch(client: Client, user: Caller) -> None:
    content = text(5000)
    created = await create(client, user, "notes.txt", None)
    assert created.status == 201, created.body
    path = path_of(created.headers["Location"])
    first = await head(client, user.token, path)
    assert first.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in first.headers
    assert (await patch(client, user.token, path, 0, content[:3000])).status == 204
    over = await patch(client, user.token, path, 3000, b"", Upload_Length=str(60 * MB))
    assert over.status == 413
    assert over.json["error"].endswith("50.0MB for document files")
    last = await patch(client, user.token, path, 3000, content[3000:], Upload_Length="5000")
    assert last.status == 204 and last.headers["Upload-Offset"] == "5000"
    media = await settled(client, user.token, media_id_of(path))
    assert media["status"] == "ready" and media["file_size"] == 5000


async def test_a_finished_upload_answers_its_offset_and_takes_no_more(
    client: Client, user: Caller
) -> None:
    content = text(500)
    path = await new_upload(client, user, content)
    assert (await patch(client, user.token, path, 0, content)).status == 204
    again = await patch(client, user.token, path, 500, b"")
    assert again.status == 204 and again.headers["Upload-Offset"] == "500"
    assert "Upload-Expires" not in again.headers
    answer = await head(client, user.token, path)
    assert answer.headers["Upload-Offset"] == answer.headers["Upload-Length"] == "500"


async def test_method_override_turns_a_post_into_patch_or_delete(
    client: Client, user: Caller
) -> None:
    content = text(300)
    path = await new_upload(client, user, content)
    answer = await client.request(
        "POST", path, token=user.token, body=content,
        headers=tus_headers(X_HTTP_Method_Override="PATCH", Upload_Offset="0", Content_Type=OCTETS),
    )  # fmt: skip
    assert answer.status == 204 and answer.headers["Upload-Offset"] == "300"
    other = await new_upload(client, user, content)
    deleted = await client.request(
        "POST", other, token=user.token, headers=tus_headers(X_HTTP_Method_Override="DELETE")
    )
    assert deleted.status == 204
    assert (await head(client, user.token, other)).status == 404


# ---- termination and expiration


async def test_termination_removes_the_upload_and_its_pending_media(
    service: Service, client: Client, user: Caller
) -> None:
    path = await new_upload(client, user, text(1000))
    assert (await patch(client, user.token, path, 0, text(400))).status == 204
    folder = service.context.settings.tus_path
    assert list(folder.glob(f"{media_id_of(path)}.*"))
    deleted = await client.request("DELETE", path, token=user.token, headers=tus_headers())
    assert deleted.status == 204 and deleted.headers["Tus-Resumable"] == "1.0.0"
    assert (await head(client, user.token, path)).status == 404
    gone = await client.request("GET", f"{API}/{media_id_of(path)}/", token=user.token)
    assert gone.status == 404
    assert not list(folder.glob(f"{media_id_of(path)}.*"))


async def test_expired_uploads_are_410_then_swept_with_their_parts(
    service: Service, client: Client, user: Caller
) -> None:
    path = await new_upload(client, user, text(1000))
    assert (await patch(client, user.token, path, 0, text(400))).status == 204
    upload_id = media_id_of(path)
    grace = service.context.settings.pending_upload_grace * 1000
    await _expire(service, upload_id, now_ms() - grace - 1000)
    assert (await head(client, user.token, path)).status == 410
    assert (await patch(client, user.token, path, 400, text(10))).status == 410
    report = await service.context.sweeper.sweep()
    assert report["expired_resumable_uploads"] >= 1
    assert (await head(client, user.token, path)).status == 404
    gone = await client.request("GET", f"{API}/{upload_id}/", token=user.token)
    assert gone.status == 404
    assert not list(service.context.settings.tus_path.glob(f"{upload_id}.*"))


async def _expire(service: Service, upload_id: str, when: int) -> None:
    repository = service.context.tus.repository
    await repository._uploads.update_one({"_id": upload_id}, {"$set": {"expires_at": when}})
    await service.context.repository.update(upload_id, {"upload_expires_at": when})


# ---- completion


async def test_content_that_fails_the_checks_fails_the_media_and_keeps_nothing(
    backend: Backend, user: Caller, samples: dict[str, bytes]
) -> None:
    content = samples["pdf"]
    client = backend.client
    path = await new_upload(client, user, content, name="photo.jpg")
    answer = await patch(client, user.token, path, 0, content)
    assert answer.status == 400
    assert answer.json == {
        "error": "File content (application/pdf) does not match its extension 'jpg'"
    }
    media = (await client.request("GET", f"{API}/{media_id_of(path)}/", token=user.token)).json
    assert media["status"] == "failed" and media["error"] == answer.json["error"]
    assert (await head(client, user.token, path)).status == 410
    key_size = await backend.service.context.blobs.size_of(
        f"media/user/{user.sub}/{media_id_of(path)}.jpg"
    )
    assert key_size is None
    assert not list(backend.settings.tus_path.glob(f"{media_id_of(path)}.*"))


async def test_is_primary_is_applied_once_the_file_is_stored(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    media = await upload_whole(client, user, "a.png", samples["png"], 100, is_primary="true")
    assert media["is_primary"] is True


async def test_a_large_upload_goes_to_s3_in_parts_and_keeps_only_a_remainder_on_disk(
    s3_service: Service, user: Caller
) -> None:
    client = Client(f"http://127.0.0.1:{s3_service.port}")
    content = text(12 * MB + 12345)
    path = await new_upload(client, user, content)
    upload_id = media_id_of(path)
    folder = s3_service.context.settings.tus_path
    offset = 0
    for size in (3 * MB, 3 * MB, 1 * MB):
        answer = await patch(client, user.token, path, offset, content[offset : offset + size])
        assert answer.status == 204, answer.body
        offset += size
    upload = await s3_service.context.tus.repository.get(upload_id)
    assert upload is not None and upload.parts
    assert all(part["size"] >= 5 * MB for part in upload.parts)  # S3's smallest part
    remainders = [p.stat().st_size for p in folder.glob(f"{upload_id}.*")]
    assert remainders == [offset - upload.stored_in_parts]  # the bytes after the parts only
    answer = await patch(client, user.token, path, offset, content[offset:])
    assert answer.status == 204, answer.body
    media = await settled(client, user.token, upload_id)
    assert media["status"] == "ready" and media["file_size"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    assert (await client.request("GET", media["url"])).body == content
    assert not list(folder.glob(f"{upload_id}.*"))


async def test_a_media_deleted_while_uploading_ends_the_upload(
    client: Client, user: Caller
) -> None:
    path = await new_upload(client, user, text(100))
    deleted = await client.request("DELETE", f"{API}/{media_id_of(path)}/", token=user.token)
    assert deleted.status == 204
    assert (await patch(client, user.token, path, 0, text(100))).status == 404


# ---- concatenation


async def _partial(client: Client, caller: Caller, content: bytes) -> str:
    answer = await client.request(
        "POST",
        TUS,
        token=caller.token,
        headers=tus_headers(Upload_Length=str(len(content)), Upload_Concat="partial"),
    )
    assert answer.status == 201, answer.body
    path = path_of(answer.headers["Location"])
    assert (await patch(client, caller.token, path, 0, content)).status == 204
    return path


async def test_partial_uploads_join_into_one_media(backend: Backend, user: Caller) -> None:
    client = backend.client
    content = text(3 * MB + 77)
    pieces = [content[:MB], content[MB : 2 * MB + 5], content[2 * MB + 5 :]]
    paths = await asyncio.gather(*(_partial(client, user, piece) for piece in pieces))
    first = await head(client, user.token, paths[0])
    assert first.headers["Upload-Concat"] == "partial"
    urls = " ".join([backend.client.base + paths[0], paths[1], paths[2]])  # absolute and relative
    fields = metadata(filename="all.txt", **user.entity)
    final = await client.request(
        "POST", TUS, token=user.token,
        headers=tus_headers(Upload_Concat=f"final;{urls}", Upload_Metadata=fields),
    )  # fmt: skip
    assert final.status == 201, final.body
    final_path = path_of(final.headers["Location"])
    described = await head(client, user.token, final_path)
    assert (
        described.headers["Upload-Length"]
        == described.headers["Upload-Offset"]
        == str(len(content))
    )
    assert described.headers["Upload-Concat"].startswith("final;")
    assert (await patch(client, user.token, final_path, len(content), b"x")).status == 403
    media = await settled(client, user.token, media_id_of(final_path))
    assert media["status"] == "ready" and media["file_size"] == len(content)
    assert (await client.request("GET", media["url"])).body == content
    assert (await head(client, user.token, paths[0])).status == 404  # joined pieces are gone


async def test_a_final_upload_needs_finished_partials_of_its_caller(
    client: Client, user: Caller, other_user: Caller
) -> None:
    answer = await client.request(
        "POST",
        TUS,
        token=user.token,
        headers=tus_headers(Upload_Length="10", Upload_Concat="partial"),
    )
    unfinished = path_of(answer.headers["Location"])
    final_headers = tus_headers(
        Upload_Concat=f"final;{unfinished}",
        Upload_Metadata=metadata(filename="a.txt", **user.entity),
    )
    refused = await client.request("POST", TUS, token=user.token, headers=final_headers)
    assert refused.status == 400 and "is not finished" in refused.json["error"]
    foreign = await client.request("POST", TUS, token=other_user.token, headers=final_headers)
    assert foreign.status in (403, 404)


# ---- concurrency


async def test_two_patches_at_once_never_both_append(
    service: Service, client: Client, user: Caller
) -> None:
    content = text(200_000)
    path = await new_upload(client, user, content)
    reader, writer = await start_patch(service.port, path, user.token, len(content))
    try:
        writer.write(content[:50_000])
        await writer.drain()
        await asyncio.sleep(0.3)  # the first PATCH holds the upload now
        second = await patch(client, user.token, path, 0, content)
        assert second.status == 423, second.body
        assert second.headers["Retry-After"] == "1"
        writer.write(content[50_000:])
        await writer.drain()
        first = await read_answer(reader)
    finally:
        writer.close()
    assert first.status == 204 and first.headers["upload-offset"] == str(len(content))
    media = await settled(client, user.token, media_id_of(path))
    assert media["file_size"] == len(content)
    assert (await client.request("GET", media["url"])).body == content


async def test_an_interrupted_patch_keeps_what_arrived(
    service: Service, client: Client, user: Caller
) -> None:
    content = text(300_000)
    path = await new_upload(client, user, content)
    _, writer = await start_patch(service.port, path, user.token, len(content))
    writer.write(content[:120_000])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    offset = "0"
    for _ in range(50):  # the server notices the close, commits and lets the upload go
        answer = await head(client, user.token, path)
        offset = answer.headers["Upload-Offset"]
        if offset != "0":
            break
        await asyncio.sleep(0.05)
    assert offset == "120000"
    rest = None
    for _ in range(50):
        rest = await patch(client, user.token, path, 120_000, content[120_000:])
        if rest.status != 423:
            break
        await asyncio.sleep(0.05)
    assert rest is not None and rest.status == 204, rest.body
    media = await settled(client, user.token, media_id_of(path))
    assert (await client.request("GET", media["url"])).body == content
    assert stored_files(service.context.settings)  # the file is in the store


async def test_a_long_patch_commits_no_more_often_than_the_checkpoint_interval(
    tmp_path: Path, user: Caller
) -> None:
    """24 MB of a PATCH arrive and the client pauses: past 16 MB, but within
    `tus_checkpoint_interval`, so nothing is committed yet (each commit pauses the body for an
    fsync and a database write). When the client goes, what arrived is kept, as ever."""
    service = await start_service(service_settings(tmp_path, tus_checkpoint_interval=60))
    try:
        client = Client(f"http://127.0.0.1:{service.port}")
        content = text(40 * MB)
        path = await new_upload(client, user, content)
        _, writer = await start_patch(service.port, path, user.token, len(content))
        writer.write(content[: 24 * MB])
        await writer.drain()
        offsets = []
        for _ in range(10):  # the server reads the 24 MB meanwhile
            await asyncio.sleep(0.1)
            offsets.append((await head(client, user.token, path)).headers["Upload-Offset"])
        assert offsets == ["0"] * 10
        writer.close()
        offset = "0"
        for _ in range(100):
            offset = (await head(client, user.token, path)).headers["Upload-Offset"]
            if offset != "0":
                break
            await asyncio.sleep(0.05)
        assert offset == str(24 * MB)
    finally:
        await service.stop()
