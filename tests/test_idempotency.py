"""`Idempotency-Key` on the routes that create or change things, against a real service whose
keys live in the embedded database: concurrent retries from several clients, replays with the
first answer, a key reused for another request (422), keys of other callers, expiry after
`idempotency_ttl`, a 5xx that frees its key, a client that leaves mid-body, and a server
killed mid-request whose key is free again once its lease has run out."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mediasvc.app import Service, start_service
from mediasvc.idempotency_records import key_id
from mediasvc.settings import MB
from tests.support.client import API, Client, Response, multipart_body
from tests.support.early import read_answer, send_head
from tests.support.process import Server
from tests.support.service import service_settings, spool_files
from tests.support.tokens import Caller, make_token

TTL = 5  # idempotency_ttl of the service under test
LEASE = 1.5  # idempotency_lease: renewed every half second while a request runs
REPLAYED = "Idempotent-Replayed"
FORM = "multipart/form-data; boundary=testboundary42"  # of multipart_body


@pytest.fixture(scope="module")
async def keyed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    settings = service_settings(
        tmp_path_factory.mktemp("idempotency"), idempotency_ttl=TTL, idempotency_lease=LEASE,
        processing_enabled=False, sweep_interval=0, image_operations=(),  # images: no job
    )  # fmt: skip
    service = await start_service(settings)
    yield service
    await service.stop()


@pytest.fixture(scope="module")
def api(keyed: Service) -> Client:
    return Client(f"http://127.0.0.1:{keyed.port}")


def _caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


def _photo(jpeg: bytes, size: int) -> bytes:
    """A real JPEG padded to `size` bytes (cameras pad theirs after the end marker too)."""
    return jpeg + os.urandom(size - len(jpeg))


async def _count(client: Client, caller: Caller) -> int:
    listing = await client.request("GET", f"{API}/?entity_id={caller.sub}", token=caller.token)
    assert listing.status == 200, listing.body
    count: int = listing.json["count"]
    return count


async def _keyed_upload(
    client: Client, caller: Caller, key: str, content: bytes, name: str = "photo.jpg"
) -> Response:
    return await client.upload(
        caller.token, name, content, caller.entity, headers={"Idempotency-Key": key}
    )


def _replay_of(first: Response, again: Response) -> None:
    """`again` is the first answer sent again, marked as such."""
    assert again.status == first.status and again.body == first.body
    assert again.headers.get("Location") == first.headers.get("Location")
    assert again.headers[REPLAYED] == "true" and REPLAYED not in first.headers
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]


# ---- several clients at once


async def test_concurrent_identical_uploads_with_one_key_create_one_media(
    keyed: Service, api: Client, samples: dict[str, bytes]
) -> None:
    caller, content = _caller(), _photo(samples["jpg"], 2 * MB)
    answers = await asyncio.gather(
        *(_keyed_upload(api, caller, "burst", content) for _ in range(8))
    )
    statuses = sorted(answer.status for answer in answers)
    assert set(statuses) <= {201, 409}, statuses
    first, *replays = [a for a in answers if a.status == 201 and REPLAYED not in a.headers]
    assert replays == []  # exactly one ran
    for answer in answers:
        if answer.status == 409:
            assert answer.json == {
                "error": "A request with this Idempotency-Key is still in progress; try again "
                "shortly"
            }
        elif answer is not first:
            _replay_of(first, answer)
    assert await _count(api, caller) == 1
    _replay_of(first, await _keyed_upload(api, caller, "burst", content))
    assert first.headers["Location"].endswith(f"{API}/{first.json['id']}/")
    assert spool_files(keyed.context.settings) == []


async def test_hundreds_of_keyed_uploads_at_once_make_one_media_per_key(
    keyed: Service, api: Client, samples: dict[str, bytes]
) -> None:
    """200 keys, each sent twice at the same moment (400 uploads in flight, over the upload
    slots): every answer is a 201, a replay of it, a 409 or a readable 429, never two media
    for a key, and every key that got a 201 has its media."""
    caller, keys = _caller(), [f"k-{n:03d}" for n in range(200)]
    contents = {key: _photo(samples["jpg"], 64 * 1024 + n) for n, key in enumerate(keys)}
    answers = await asyncio.gather(
        *(_keyed_upload(api, caller, key, contents[key]) for key in keys for _ in range(2))
    )
    made: dict[str, str] = {}
    for n, answer in enumerate(answers):
        key = keys[n // 2]
        assert answer.status in (201, 409, 429), (answer.status, answer.body)
        if answer.status == 201:
            assert made.setdefault(key, answer.json["id"]) == answer.json["id"], key
            assert answer.json["file_size"] == len(contents[key])
        else:
            assert set(answer.json) == {"error"}
    assert len(made) >= len(keys) // 2, f"only {len(made)} keys got a 201"
    stored: set[str] = set()
    for offset in range(0, len(keys), 100):  # pages of at most 100 (max_page_size)
        page = await api.request(
            "GET", f"{API}/?entity_id={caller.sub}&limit=100&offset={offset}", token=caller.token
        )
        stored |= {media["id"] for media in page.json["results"]}
    assert page.json["count"] == len(stored) == len(made)  # one media per key, no stray
    assert stored == set(made.values())
    assert spool_files(keyed.context.settings) == []


def _post_json(port: int, path: str, token: str, body: Any, key: str) -> tuple[int, Any, Any]:
    """One POST on a connection of its own (http.client, from a thread)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST", path, json.dumps(body),
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
             "Idempotency-Key": key},
        )  # fmt: skip
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


async def test_concurrent_presigned_requests_from_threads_record_one_pending_media(
    keyed: Service, api: Client
) -> None:
    caller = _caller()
    body = {"filename": "clip.mp4", "content_type": "video/mp4", "file_size": 1000,
            **caller.entity}  # fmt: skip
    path = f"{API}/presigned_upload/"
    answers = await asyncio.gather(
        *(asyncio.to_thread(_post_json, keyed.port, path, caller.token, body, "presign-1")
          for _ in range(8))
    )  # fmt: skip
    assert {status for status, _, _ in answers} <= {201, 409}
    created = [(headers, answer) for status, headers, answer in answers if status == 201]
    assert len({answer["media_id"] for _, answer in created}) == 1
    assert sum(REPLAYED not in headers for headers, _ in created) == 1
    assert len({headers["Location"] for headers, _ in created}) == 1
    assert await _count(api, caller) == 1
    status, headers, again = await asyncio.to_thread(
        _post_json, keyed.port, path, caller.token, body, "presign-1"
    )
    assert (status, headers[REPLAYED], again) == (201, "true", created[0][1])


# ---- what a key means


async def test_the_same_key_with_a_different_request_is_422_and_stores_nothing(
    keyed: Service, api: Client, samples: dict[str, bytes]
) -> None:
    caller = _caller()
    first = await _keyed_upload(api, caller, "k-422", samples["jpg"])
    assert first.status == 201, first.body
    other = await _keyed_upload(api, caller, "k-422", samples["png"], "photo.png")
    assert (other.status, other.json) == (
        422, {"error": "This Idempotency-Key was already used for a different request"},
    )  # fmt: skip
    renamed = await _keyed_upload(api, caller, "k-422", samples["jpg"], "other.jpg")
    assert renamed.status == 422  # the file's name is part of the request
    assert await _count(api, caller) == 1 and spool_files(keyed.context.settings) == []
    # the fields count, their order does not (nor does the boundary)
    fields = {**caller.entity, "title": "A"}
    body, content_type = multipart_body(
        fields, [("file", "t.txt", b"text\n")], boundary="one", fields_first=True
    )
    headers = {"Content-Type": content_type, "Idempotency-Key": "k-form"}
    sent = await api.request(
        "POST", f"{API}/upload/", token=caller.token, body=body, headers=headers
    )
    assert sent.status == 201, sent.body
    body, content_type = multipart_body(dict(reversed(fields.items())),
                                        [("file", "t.txt", b"text\n")], boundary="two")  # fmt: skip
    headers = {"Content-Type": content_type, "Idempotency-Key": "k-form"}
    again = await api.request(
        "POST", f"{API}/upload/", token=caller.token, body=body, headers=headers
    )
    _replay_of(sent, again)
    body, content_type = multipart_body({**fields, "title": "B"}, [("file", "t.txt", b"text\n")])
    headers = {"Content-Type": content_type, "Idempotency-Key": "k-form"}
    changed = await api.request(
        "POST", f"{API}/upload/", token=caller.token, body=body, headers=headers
    )
    assert changed.status == 422


async def test_json_requests_are_compared_as_json(
    api: Client, upload_media: Any, keyed: Service
) -> None:
    caller = _caller()
    media = [await upload_media(caller, "a.txt", b"a\n", client=api) for _ in range(2)]
    ids = [m["id"] for m in media]
    path, key = f"{API}/bulk_update/", {"Idempotency-Key": "bulk-1"}
    body = json.dumps({"media_ids": ids, "updates": {"title": "T", "alt_text": "A"}})
    first = await api.request("POST", path, token=caller.token, body=body.encode(), headers=key)
    assert (first.status, first.json) == (200, {"updated": 2, "failed": []})
    reordered = json.dumps({"updates": {"alt_text": "A", "title": "T"}, "media_ids": ids}, indent=2)
    again = await api.request(
        "POST", path, token=caller.token, body=reordered.encode(), headers=key
    )
    _replay_of(first, again)
    other = {"media_ids": ids, "updates": {"title": "U"}}
    assert (await api.request("POST", path, token=caller.token, json_body=other,
                               headers=key)).status == 422  # fmt: skip
    deleted = await api.request("POST", f"{API}/bulk_delete/", token=caller.token,
                                 json_body={"media_ids": ids}, headers=key)  # fmt: skip
    assert deleted.json == {"deleted": 2, "failed": []}  # another route: another key
    repeated = await api.request("POST", f"{API}/bulk_delete/", token=caller.token,
                                  json_body={"media_ids": ids}, headers=key)  # fmt: skip
    _replay_of(deleted, repeated)  # not {"deleted": 0, "failed": [...]}


async def test_a_retried_process_request_gets_its_202_not_a_conflict(
    api: Client, upload_media: Any
) -> None:
    caller = _caller()
    media = await upload_media(caller, "photo.jpg", client=api)
    path = f"{API}/{media['id']}/process/"
    body = {"operations": ["thumbnail"]}
    key = {"Idempotency-Key": "process-1"}
    first = await api.request("POST", path, token=caller.token, json_body=body, headers=key)
    assert first.status == 202, first.body
    _replay_of(first, await api.request("POST", path, token=caller.token, json_body=body,
                                         headers=key))  # fmt: skip
    unkeyed = await api.request("POST", path, token=caller.token, json_body=body)
    assert unkeyed.status == 409  # without a key it is a second request
    other = await upload_media(caller, "photo.jpg", client=api)
    elsewhere = await api.request(
        "POST", f"{API}/{other['id']}/process/", token=caller.token, json_body=body, headers=key
    )
    assert elsewhere.status == 422  # the media in the path is part of the request


async def test_keys_are_per_caller_admins_included(
    api: Client, samples: dict[str, bytes], admin: Caller
) -> None:
    caller, stranger = _caller(), _caller()
    mine = await _keyed_upload(api, caller, "shared-key", samples["jpg"])
    theirs = await _keyed_upload(api, stranger, "shared-key", samples["jpg"])
    assert mine.status == theirs.status == 201 and REPLAYED not in theirs.headers
    body, content_type = multipart_body(caller.entity, [("file", "photo.jpg", samples["jpg"])])
    headers = {"Content-Type": content_type, "Idempotency-Key": "shared-key"}
    by_admin = await api.request(
        "POST", f"{API}/upload/", token=admin.token, body=body, headers=headers
    )
    assert by_admin.status == 201 and REPLAYED not in by_admin.headers  # the admin's own key
    assert len({mine.json["id"], theirs.json["id"], by_admin.json["id"]}) == 3
    assert await _count(api, caller) == 2


async def test_kept_4xx_answers_are_replayed_and_early_refusals_are_not_kept(
    api: Client, samples: dict[str, bytes]
) -> None:
    caller = _caller()
    bad = {"filename": "tool.exe", "content_type": "application/octet-stream", "file_size": 10,
           **caller.entity}  # fmt: skip
    key = {"Idempotency-Key": "bad-1"}
    path = f"{API}/presigned_upload/"
    refused = await api.request("POST", path, token=caller.token, json_body=bad, headers=key)
    assert refused.status == 400
    _replay_of(refused, await api.request("POST", path, token=caller.token, json_body=bad,
                                           headers=key))  # fmt: skip
    # A 403 sent before the file was read has no fingerprint: not kept, the key is free again.
    elsewhere = {"entity_type": "service", "entity_id": str(uuid.uuid4())}
    for _ in range(2):
        forbidden = await api.upload(
            caller.token, "a.jpg", samples["jpg"], elsewhere, headers={"Idempotency-Key": "f"},
            fields_first=True,
        )  # fmt: skip
        assert forbidden.status == 403 and REPLAYED not in forbidden.headers


@pytest.mark.parametrize(
    "value",
    ['""', "", "x" * 256, '"' + "x" * 256 + '"', '"open', "two words", '"bad\\q"', "é"],
)
async def test_a_malformed_key_is_400(api: Client, value: str) -> None:
    caller = _caller()
    body = {"media_ids": [str(uuid.uuid4())], "updates": {"title": "x"}}
    answer = await api.request(
        "POST", f"{API}/bulk_update/", token=caller.token, json_body=body,
        headers={"Idempotency-Key": value},
    )  # fmt: skip
    assert (answer.status, answer.json) == (
        400, {"error": "Idempotency-Key must be one string of 1 to 255 printable ASCII characters"},
    )  # fmt: skip


async def test_a_quoted_key_is_the_same_key_and_two_keys_are_400(
    keyed: Service, api: Client
) -> None:
    caller = _caller()
    body = {"media_ids": [str(uuid.uuid4())], "updates": {"title": "x"}}
    path = f"{API}/bulk_update/"
    bare = await api.request("POST", path, token=caller.token, json_body=body,
                              headers={"Idempotency-Key": "q-1"})  # fmt: skip
    quoted = await api.request("POST", path, token=caller.token, json_body=body,
                                headers={"Idempotency-Key": '"q-1"'})  # fmt: skip
    _replay_of(bare, quoted)
    text = json.dumps(body)
    reader, writer = await send_head(keyed.port, (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {caller.token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\n"
        f"Content-Length: {len(text)}\r\n\r\n{text}"
    ))  # fmt: skip
    try:
        assert (await read_answer(reader)).status == 400
    finally:
        writer.close()


# ---- when a key stops counting


async def test_a_kept_answer_expires_after_the_ttl_and_is_swept(
    keyed: Service, api: Client, samples: dict[str, bytes]
) -> None:
    caller = _caller()
    first = await _keyed_upload(api, caller, "ttl", samples["jpg"])
    assert first.status == 201
    record = key_id(caller.sub, "upload", "ttl")
    assert await keyed.context.idempotency.records.get(record) is not None
    await asyncio.sleep(TTL + 0.5)
    swept = await keyed.context.idempotency.sweep()
    assert swept["expired_idempotency_keys"] >= 1  # this one, and those of earlier tests
    assert await keyed.context.idempotency.records.get(record) is None
    later = await _keyed_upload(api, caller, "ttl", samples["jpg"])
    assert later.status == 201 and REPLAYED not in later.headers
    assert later.json["id"] != first.json["id"] and await _count(api, caller) == 2


@contextmanager
def _store_refuses(keyed: Service, caller: Caller) -> Iterator[None]:
    """The store cannot take files of this caller's entity: a plain file where the entity's
    folder goes makes every store of it fail (a 503, as any storage trouble)."""
    folder = keyed.context.settings.storage_path / "media" / "user" / caller.sub
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(b"")
    try:
        yield
    finally:
        folder.unlink()


async def test_a_5xx_does_not_keep_the_key(
    keyed: Service, api: Client, samples: dict[str, bytes]
) -> None:
    caller = _caller()
    with _store_refuses(keyed, caller):
        failed = await _keyed_upload(api, caller, "5xx", samples["jpg"])
        assert (failed.status, failed.json) == (
            503,
            {"error": "Storage unavailable, try again shortly"},
        )
    retried = await _keyed_upload(api, caller, "5xx", samples["jpg"])
    assert retried.status == 201 and REPLAYED not in retried.headers
    assert await _count(api, caller) == 1


def _start_upload(
    port: int, token: str, sub: str, key: str, size: int
) -> tuple[socket.socket, bytes]:
    """A keyed upload whose body is only half sent (the rest is for the caller)."""
    body, content_type = multipart_body(
        {"entity_type": "user", "entity_id": sub}, [("file", "big.txt", b"x" * size)]
    )
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        (
            f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
            f"Idempotency-Key: {key}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[: len(body) // 2]
    )
    return sock, body


def _wait_for_spool(folder: Path, timeout: float = 20) -> None:
    """Until an upload has started spooling its file (so it holds its key)."""
    deadline = time.monotonic() + timeout
    while not list(folder.glob("upload-*")):
        assert time.monotonic() < deadline, "the upload never started spooling"
        time.sleep(0.02)


async def _until_not_409(retry: Any, deadline: float) -> Response:
    while True:
        answer = await retry()
        if answer.status != 409 or time.monotonic() > deadline:
            return answer  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)


async def test_a_client_that_leaves_mid_body_frees_its_key(keyed: Service, api: Client) -> None:
    caller = _caller()
    sock, body = _start_upload(keyed.port, caller.token, caller.sub, "left", 2 * MB)
    headers = {"Idempotency-Key": "left", "Content-Type": FORM}

    async def retry() -> Response:
        return await api.request(
            "POST", f"{API}/upload/", token=caller.token, body=body, headers=headers
        )

    try:
        await asyncio.to_thread(_wait_for_spool, keyed.context.settings.spool_path)
        assert (await retry()).status == 409
    finally:
        sock.close()
    answer = await _until_not_409(retry, time.monotonic() + 5)
    assert answer.status == 201 and REPLAYED not in answer.headers, answer.body


def _upload_with_key(
    server: Server, token: str, body: bytes, key: str
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", f"{API}/upload/", body, {
            "Authorization": f"Bearer {token}", "Idempotency-Key": key,
            "Content-Type": FORM,
        })  # fmt: skip
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_key_held_by_a_killed_server_is_free_once_its_lease_has_run_out(tmp_path: Path) -> None:
    """SIGKILL while the first request streams its body: its claim stays in the database
    (the restarted server sees it: 409) until its lease runs out; then the retry runs, once."""
    settings = {"idempotency_lease": "3", "processing_enabled": "false"}
    server = Server(tmp_path / "var", **settings)
    again = None
    try:
        sub = str(uuid.uuid4())
        token = server.token(sub)
        sock, body = _start_upload(server.port, token, sub, "killed", 2 * MB)
        try:
            _wait_for_spool(tmp_path / "var" / "spool")
            status, _, _ = _upload_with_key(server, token, body, "killed")
            assert status == 409  # the first holds the key
            server.process.kill()
            server.process.wait()
            killed_at = time.monotonic()
        finally:
            sock.close()
        again = Server(tmp_path / "var", port=server.port, **settings)
        deadline = killed_at + 3 + 20
        while True:
            status, headers, answer = _upload_with_key(again, token, body, "killed")
            if status != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 201 and REPLAYED not in headers, answer
        assert time.monotonic() - killed_at >= 2  # not before the lease (renewed each 1 s) ran out
        status, headers, replay = _upload_with_key(again, token, body, "killed")
        assert (status, headers.get(REPLAYED), replay) == (201, "true", answer)
        listed = again.request("GET", f"{API}/?entity_id={sub}", token)
        assert listed[1]["count"] == 1
    finally:
        server.kill()
        if again is not None:
            again.kill()
