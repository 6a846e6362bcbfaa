"""Direct upload: every allowed type, the field rules, and every way an upload can be refused."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid

import pytest

from mediasvc.app import Service
from mediasvc.settings import Settings
from tests.support.client import API, Client, multipart_body
from tests.support.early import read_answer
from tests.support.service import spool_files
from tests.support.tokens import Caller, make_token

PROCESSED = {"image", "video", "audio"}


@pytest.mark.parametrize(
    ("ext", "content_type", "media_type"),
    [
        ("jpg", "image/jpeg", "image"),
        ("png", "image/png", "image"),
        ("gif", "image/gif", "image"),
        ("webp", "image/webp", "image"),
        ("svg", "image/svg+xml", "image"),
        ("mp4", "video/mp4", "video"),
        ("webm", "video/webm", "video"),
        ("wav", "audio/wav", "audio"),
        ("mp3", "audio/mpeg", "audio"),
        ("ogg", "audio/ogg", "audio"),
        ("flac", "audio/flac", "audio"),
        ("m4a", "audio/mp4", "audio"),
        ("pdf", "application/pdf", "document"),
        ("txt", "text/plain", "document"),
    ],
)
async def test_upload_each_allowed_type(
    client: Client,
    user: Caller,
    samples: dict[str, bytes],
    settings: Settings,
    ext: str,
    content_type: str,
    media_type: str,
) -> None:
    content = samples[ext]
    response = await client.upload(user.token, f"sample.{ext}", content, user.entity)
    assert response.status == 201, response.body
    media = response.json
    assert media["content_type"] == content_type
    assert media["media_type"] == media_type
    assert media["file_size"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    processed = media_type in PROCESSED or ext == "pdf"
    assert media["status"] == ("processing" if processed else "ready")
    stored = settings.storage_path / f"media/user/{user.sub}/{media['id']}.{ext}"
    assert stored.read_bytes() == content
    assert spool_files(settings) == []


async def test_upload_response_has_the_spec_fields(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    fields = {**user.entity, "title": "Gallery", "description": "d", "alt_text": "a"}
    media = (await client.upload(user.token, "photo.jpg", samples["jpg"], fields)).json
    for name, kind in {
        "id": str,
        "url": str,
        "filename": str,
        "file_size": int,
        "content_type": str,
        "media_type": str,
        "status": str,
        "created_at": str,
    }.items():
        assert isinstance(media[name], kind), name
    assert media["title"] == "Gallery"
    assert media["url"].startswith("http://127.0.0.1:")
    assert f"/files/media/user/{user.sub}/{media['id']}.jpg?" in media["url"]
    assert media["created_at"].endswith("Z")


async def test_field_order_does_not_matter(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    boundary = "orderboundary"
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in {**user.entity, "title": "fields first"}.items()
    )
    file_part = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + samples["png"]
        + b"\r\n"
    )
    body = fields + file_part + f"--{boundary}--\r\n".encode()
    response = await client.request(
        "POST",
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status == 201, response.body
    assert response.json["title"] == "fields first"


async def test_upload_metadata_fields(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    fields = {**user.entity, "display_order": "3", "is_primary": "true", "title": "T"}
    media = (await client.upload(user.token, "a.jpg", samples["jpg"], fields)).json
    assert media["display_order"] == 3
    assert media["is_primary"] is True


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("evil\u202egpj.exe.jpg", "evilgpj.exe.jpg"),
        ("tab\there\x00.jpg", "tabhere.jpg"),
        ("a" * 400 + ".jpg", "a" * 251 + ".jpg"),
        ("\u00e9" * 300 + ".jpg", "\u00e9" * 125 + ".jpg"),
        (".jpg", "upload.jpg"),
    ],
)
async def test_filenames_are_cleaned(
    client: Client, user: Caller, samples: dict[str, bytes], filename: str, expected: str
) -> None:
    response = await client.upload(user.token, filename, samples["jpg"], user.entity)
    assert response.status == 201, response.body
    assert response.json["filename"] == expected
    assert len(response.json["filename"].encode()) <= 255
    assert response.json["url"].split("?")[0].endswith(f"/{response.json['id']}.jpg")


async def _assert_nothing_for(client: Client, caller: Caller, settings: Settings) -> None:
    listing = await client.request("GET", f"{API}/?entity_id={caller.sub}", token=caller.token)
    assert listing.json["count"] == 0
    assert not (settings.storage_path / f"media/user/{caller.sub}").exists()
    for _ in range(50):
        if not spool_files(settings):
            break
        await asyncio.sleep(0.02)
    assert spool_files(settings) == []


@pytest.mark.parametrize(
    ("filename", "content_key", "status", "message"),
    [
        ("virus.exe", "jpg", 400, "File extension 'exe' is not allowed"),
        ("noextension", "jpg", 400, "File name has no extension"),
        ("photo.jpg", "png", 400, "File content (image/png) does not match its extension 'jpg'"),
        ("movie.mp4", "txt", 400, "File content (text/plain) does not match its extension 'mp4'"),
        ("doc.pdf", "jpg", 400, "File content (image/jpeg) does not match its extension 'pdf'"),
        ("empty.jpg", "", 400, "The submitted file is empty"),
    ],
)
async def test_refused_files_leave_nothing(
    client: Client,
    user: Caller,
    samples: dict[str, bytes],
    settings: Settings,
    filename: str,
    content_key: str,
    status: int,
    message: str,
) -> None:
    content = samples[content_key] if content_key else b""
    response = await client.upload(user.token, filename, content, user.entity)
    assert response.status == status
    assert response.json == {"error": message}
    await _assert_nothing_for(client, user, settings)


async def test_image_over_limit_is_413_with_spec_message(
    client: Client, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    content = samples["jpg"] + b"\0" * (10 * 1024 * 1024)
    response = await client.upload(user.token, "big.jpg", content, user.entity)
    assert response.status == 413
    assert response.json == {
        "error": "File size exceeds maximum allowed size of 10.0MB for image files"
    }
    await _assert_nothing_for(client, user, settings)


async def test_oversized_upload_is_cut_off_early(
    service: Service, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    """Declare 400 MB, send 11 MB of a .jpg: the 413 arrives before the rest is sent."""
    boundary = "cutoffboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
    ).encode()
    declared = 400 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        (
            f"POST {API}/upload/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {user.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        + head
        + samples["jpg"]
    )
    chunk = b"\0" * (1024 * 1024)
    sent = 0
    try:
        for _ in range(11):
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    assert b" 413 " in status_line
    assert sent < declared / 10
    writer.close()
    await _assert_nothing_for(client_for(service), user, settings)


def client_for(service: Service) -> Client:
    return Client(f"http://127.0.0.1:{service.port}")


async def test_declared_length_over_limit_is_refused_before_reading(
    client: Client, user: Caller, service: Service
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        (
            f"POST {API}/upload/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {user.token}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {10 * 1024**3}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    assert b" 413 " in status_line
    writer.close()


async def test_body_arriving_in_uneven_pieces_is_stored_byte_for_byte(
    service: Service, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    # The first bytes come with the request head (buffered by Tornado's stream), the rest
    # in pieces smaller and larger than a read chunk, some after a pause (read straight
    # from the socket, or after waiting for it).
    content = samples["mp4"] + random.randbytes(3 * 1024 * 1024 + 17)
    body, content_type = multipart_body(user.entity, [("file", "clip.mp4", content)])
    head = (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {user.token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    sizes = [1000, 7, 300_000, 65_536, 1, 1_500_000]
    writer.write(head + body[: sizes[0]])
    offset = sizes[0]
    for size in [*sizes[1:], len(body)]:
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(body[offset : offset + size])
        offset += size
    await writer.drain()
    answer = await read_answer(reader)
    writer.close()
    assert answer.status == 201, answer.body
    media = json.loads(answer.body)
    assert media["file_size"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    stored = settings.storage_path / f"media/user/{user.sub}/{media['id']}.mp4"
    assert stored.read_bytes() == content


async def test_client_disconnect_mid_upload_leaves_nothing(
    service: Service, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    boundary = "disconnect"
    _reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        (
            f"POST {API}/upload/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {user.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
        ).encode()
        + samples["mp4"]
        + b"\0" * (3 * 1024 * 1024)
    )
    await writer.drain()
    for _ in range(100):  # wait until the server has spooled some of it
        if spool_files(settings):
            break
        await asyncio.sleep(0.01)
    assert spool_files(settings), "the upload should be spooling"
    writer.transport.abort()
    await _assert_nothing_for(client_for(service), user, settings)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"entity_id": "{id}"}, "entity_type is required"),
        ({"entity_type": "user"}, "entity_id is required"),
        ({"entity_type": "user", "entity_id": "not-a-uuid"}, "entity_id must be a UUID"),
        (
            {"entity_type": "User; drop", "entity_id": "{id}"},
            "entity_type must be a lower-case identifier such as 'service'",
        ),
        (
            {"entity_type": "user", "entity_id": "{id}", "display_order": "x"},
            "display_order must be an integer",
        ),
        (
            {"entity_type": "user", "entity_id": "{id}", "display_order": "-1"},
            "display_order must be between 0 and 1000000",
        ),
        (
            {"entity_type": "user", "entity_id": "{id}", "is_primary": "maybe"},
            "is_primary must be true or false",
        ),
        (
            {"entity_type": "user", "entity_id": "{id}", "title": "t" * 256},
            "title must be at most 255 characters",
        ),
        ({"entity_type": "user", "entity_id": "{id}", "status": "ready"}, "Unknown field 'status'"),
    ],
)
async def test_bad_fields_are_400(
    client: Client,
    user: Caller,
    samples: dict[str, bytes],
    settings: Settings,
    fields: dict[str, str],
    message: str,
) -> None:
    filled = {k: v.replace("{id}", user.sub) for k, v in fields.items()}
    response = await client.upload(user.token, "a.jpg", samples["jpg"], filled)
    assert response.status == 400
    assert response.json == {"error": message}
    await _assert_nothing_for(client, user, settings)


async def test_missing_file_part(client: Client, user: Caller) -> None:
    body, content_type = multipart_body(user.entity, [])
    response = await client.request(
        "POST",
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": content_type},
    )
    assert response.status == 400
    assert response.json == {"error": "No file was submitted in the 'file' field"}


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b'{"file": "x"}', "Request body must be multipart/form-data"),
        ("multipart/form-data", b"--x\r\n", "multipart/form-data without a boundary"),
        (
            "multipart/form-data; boundary=abc",
            b'--abc\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello',
            "Malformed multipart body: no closing boundary",
        ),
        (
            "multipart/form-data; boundary=abc",
            b"garbage without any boundary",
            "Malformed multipart body: no closing boundary",
        ),
    ],
)
async def test_malformed_bodies_are_400(
    client: Client, user: Caller, settings: Settings, content_type: str, body: bytes, message: str
) -> None:
    response = await client.request(
        "POST",
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": content_type},
    )
    assert response.status == 400
    assert response.json == {"error": message}
    await _assert_nothing_for(client, user, settings)


async def test_too_many_parts_is_400(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    fields = {f"f{i}": "x" for i in range(20)}
    body, content_type = multipart_body(fields, [("file", "a.jpg", samples["jpg"])])
    response = await client.request(
        "POST",
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": content_type},
    )
    assert response.status == 400
    assert response.json["error"].startswith("Malformed multipart body")


async def test_oversized_part_header_is_400(client: Client, user: Caller) -> None:
    name = "n" * 5000
    body = (f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\nv\r\n--b--\r\n').encode()
    response = await client.request(
        "POST",
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status == 400
    assert response.json["error"].startswith("Malformed multipart body")


async def test_second_file_is_refused(
    client: Client, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    body, content_type = multipart_body(
        user.entity, [("file", "a.jpg", samples["jpg"]), ("file", "b.jpg", samples["jpg"])]
    )
    response = await client.request(
        "POST",
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": content_type},
    )
    assert response.status == 400
    await _assert_nothing_for(client, user, settings)


async def test_no_permission_is_403(
    client: Client, user: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    fields = {"entity_type": "service", "entity_id": str(uuid.uuid4())}
    response = await client.upload(user.token, "a.jpg", samples["jpg"], fields)
    assert response.status == 403
    assert response.json == {"error": "No permission to upload media for this entity"}
    other = {"entity_type": "user", "entity_id": str(uuid.uuid4())}
    assert (await client.upload(user.token, "a.jpg", samples["jpg"], other)).status == 403
    assert spool_files(settings) == []


async def test_grants_allow_uploads(client: Client, samples: dict[str, bytes]) -> None:
    service_id = str(uuid.uuid4())
    sub = str(uuid.uuid4())
    token = make_token(sub, entities=[f"service:{service_id}", "practitioner:*"])
    ok = {"entity_type": "service", "entity_id": service_id}
    assert (await client.upload(token, "a.jpg", samples["jpg"], ok)).status == 201
    any_practitioner = {"entity_type": "practitioner", "entity_id": str(uuid.uuid4())}
    assert (await client.upload(token, "a.jpg", samples["jpg"], any_practitioner)).status == 201
    other_service = {"entity_type": "service", "entity_id": str(uuid.uuid4())}
    assert (await client.upload(token, "a.jpg", samples["jpg"], other_service)).status == 403


async def test_admin_uploads_anywhere(
    client: Client, admin: Caller, samples: dict[str, bytes]
) -> None:
    fields = {"entity_type": "service", "entity_id": str(uuid.uuid4())}
    assert (await client.upload(admin.token, "a.jpg", samples["jpg"], fields)).status == 201


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_other_methods_on_upload_read_nothing(
    client: Client, user: Caller, samples: dict[str, bytes], settings: Settings, method: str
) -> None:
    body, content_type = multipart_body(user.entity, [("file", "a.jpg", samples["jpg"])])
    response = await client.request(
        method,
        f"{API}/upload/",
        token=user.token,
        body=body,
        headers={"Content-Type": content_type},
    )
    assert response.status == 405
    assert response.json == {"error": "Method Not Allowed"}
    await _assert_nothing_for(client, user, settings)


@pytest.mark.parametrize(
    ("name", "content", "status"),
    [
        ("page.svg", b"<html><body><svg></svg><script>alert(1)</script></body></html>", 400),
        (
            "ok.svg",
            b'<?xml version="1.0"?>\n<!-- c -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            201,
        ),
        ("tiny.txt", b"a", 201),
        ("binary.txt", b"\x00\x01\x02", 400),
    ],
)
async def test_sniffing_edge_cases(
    client: Client, user: Caller, name: str, content: bytes, status: int
) -> None:
    response = await client.upload(user.token, name, content, user.entity)
    assert response.status == status, response.body


async def test_exact_multipart_type_and_clean_parser_messages(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    body, _ = multipart_body(user.entity, [("file", "a.jpg", samples["jpg"])], boundary="bb")
    wrong = await client.request(
        "POST", f"{API}/upload/", token=user.token, body=body,
        headers={"Content-Type": "multipart/form-dataX; boundary=bb"},
    )  # fmt: skip
    assert wrong.status == 400
    raw = (
        b'--bb\r\nContent-Disposition: form-data; name="file"; filename="caf\xe9.jpg"\r\n\r\n'
        + samples["jpg"] + b"\r\n--bb--\r\n"
    )  # fmt: skip
    latin = await client.request(
        "POST", f"{API}/upload/", token=user.token, body=raw,
        headers={"Content-Type": "multipart/form-data; boundary=bb"},
    )  # fmt: skip
    assert latin.status == 400
    assert latin.json["error"].startswith("Malformed multipart body:")
    assert "UnicodeDecodeError" not in latin.json["error"] and "\\x" not in latin.json["error"]


async def test_identifiers_with_a_trailing_newline_are_refused(
    client: Client, admin: Caller, samples: dict[str, bytes]
) -> None:
    fields = {"entity_type": "service\n", "entity_id": str(uuid.uuid4())}
    response = await client.upload(admin.token, "a.jpg", samples["jpg"], fields)
    assert response.status == 400
    sneaky = make_token(str(uuid.uuid4()), entities=["service:abc\n"])
    assert (await client.request("GET", f"{API}/", token=sneaky)).status == 401


async def test_concurrent_primary_uploads_leave_exactly_what_succeeded(
    client: Client, admin: Caller, samples: dict[str, bytes], settings: Settings
) -> None:
    entity = str(uuid.uuid4())
    fields = {"entity_type": "practitioner", "entity_id": entity, "is_primary": "true"}
    responses = await asyncio.gather(
        *(client.upload(admin.token, "a.jpg", samples["jpg"], fields) for _ in range(12))
    )
    created = [r for r in responses if r.status == 201]
    assert {r.status for r in responses} <= {201, 409}
    listing = await client.request("GET", f"{API}/?entity_id={entity}&limit=100", token=admin.token)
    assert listing.json["count"] == len(created)
    assert sum(m["is_primary"] for m in listing.json["results"]) == 1
    originals = list((settings.storage_path / f"media/practitioner/{entity}").glob("*.jpg"))
    assert len([p for p in originals if p.name.count(".") == 1]) == len(created)
