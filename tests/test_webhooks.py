"""Webhooks from outside: endpoints registered through the admin API, a real receiver on a
loopback port that verifies every delivery with the `standardwebhooks` package, real uploads
and processing, and servers killed with SIGKILL between a change and its delivery.

The in-process service here has short webhook settings (retries from 0.3 s, an endpoint
disabled after 1.5 s of failures, presigned URLs that expire after 1 s) and allows private
addresses, since the receiver is on loopback; a second one keeps the default refusal."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mediasvc.app import Service, start_service
from tests.support.client import API, Client
from tests.support.media import Uploader, settled
from tests.support.process import BIN, Server
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token
from tests.support.tus import create as tus_create
from tests.support.tus import patch as tus_patch
from tests.support.tus import path_of
from tests.support.webhooks import Hook, Received, Receiver, has, of_type

WEBHOOKS = f"{API}/webhooks"
FAST = {
    "webhook_allow_private": True,
    "webhook_send_enabled": True,
    "webhook_poll_interval": 0.05,
    "webhook_retry_base": 0.3,
    "webhook_retry_max_interval": 2.0,
    "webhook_retry_window": 30.0,
    "webhook_disable_after": 1.5,
    "webhook_timeout": 2.0,
    "webhook_lease": 3.0,
    "webhook_event_grace": 1.0,
    "webhook_secret_grace": 60.0,
    "webhook_max_response_bytes": 64 * 1024,
    "presigned_upload_ttl": 1,
    "pending_upload_grace": 0,
    "sweep_interval": 0.3,
}
EVERY_EVENT = ["media.created", "media.ready", "media.failed", "media.deleted", "upload.expired"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def every_delivery_verifies(receiver: Receiver) -> Iterator[None]:
    """Whatever a test checks, every request any hook of the shared receiver got carries a
    signature the reference library accepts with that hook's secret."""
    yield
    for hook in receiver.hooks.values():
        unverified = [r.webhook_id for r in hook.received if not r.verified]
        assert not unverified, f"hook {hook.name}: not verified: {unverified}"


@pytest.fixture(scope="module")
async def hooked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    settings = service_settings(tmp_path_factory.mktemp("webhooks"), **FAST)
    running = await start_service(settings)
    yield running
    await running.stop()


@pytest.fixture(scope="module")
def api(hooked: Service) -> Client:
    return Client(f"http://127.0.0.1:{hooked.port}")


@pytest.fixture(scope="module")
def root() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub, roles=["admin"], ttl=3600))


async def register(
    client: Client, admin: Caller, hook: Hook, events: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    """Register `hook` (every event unless `events`); its secret goes on the hook."""
    body = {"url": hook.url, "events": events or EVERY_EVENT, **fields}
    response = await client.request("POST", f"{WEBHOOKS}/", token=admin.token, json_body=body)
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json
    hook.secrets = [created["secret"]]
    return created


async def deliveries(client: Client, admin: Caller, webhook_id: str) -> list[dict[str, Any]]:
    response = await client.request(
        "GET", f"{WEBHOOKS}/{webhook_id}/deliveries/?limit=100", token=admin.token
    )
    assert response.status == 200, response.body
    found: list[dict[str, Any]] = response.json["results"]
    return found


async def delivery_of(
    client: Client, admin: Caller, webhook_id: str, event_type: str, media_id: str
) -> dict[str, Any]:
    """The delivery of one event of one media (matched through what the receiver got)."""
    for delivery in await deliveries(client, admin, webhook_id):
        if delivery["event_type"] == event_type:
            return delivery
    raise AssertionError(f"no {event_type} delivery of {media_id}")


async def unregister(client: Client, admin: Caller, webhook_id: str) -> None:
    response = await client.request("DELETE", f"{WEBHOOKS}/{webhook_id}/", token=admin.token)
    assert response.status == 204


# ---- the admin API


async def test_admin_api_registers_lists_changes_and_removes(
    api: Client, root: Caller, receiver: Receiver
) -> None:
    hook = receiver.hook("admin")
    created = await register(api, root, hook, ["media.ready", "media.ready"], description="CRM")
    assert created["events"] == ["media.ready"] and created["enabled"] is True
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    location = f"{api.base}{WEBHOOKS}/{created['id']}/"
    listed = (await api.request("GET", f"{WEBHOOKS}/", token=root.token)).json["results"]
    assert created["id"] in [w["id"] for w in listed]
    assert all("secret" not in w for w in listed)
    read = await api.request("GET", location, token=root.token)
    assert read.status == 200 and "secret" not in read.json
    assert read.json["description"] == "CRM"

    change = {"events": ["media.failed", "upload.expired"], "enabled": False, "description": ""}
    patched = await api.request("PATCH", location, token=root.token, json_body=change)
    assert patched.status == 200, patched.body
    assert (patched.json["events"], patched.json["enabled"]) == (change["events"], False)

    removed = await api.request("DELETE", location, token=root.token)
    assert removed.status == 204
    assert (await api.request("GET", location, token=root.token)).status == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"events": ["media.ready", "media.moved", "x"]},
            "Unknown event types: 'media.moved', 'x'",
        ),
        ({"events": []}, "events must be a non-empty list of"),
        ({"url": "ftp://example.com/"}, "url must be an http or https URL"),
        ({"url": "https://user:pw@example.com/"}, "url must not carry credentials"),
        ({"url": "https://example.com/" + "a" * 3000}, "url must be at most 2048 characters"),
        ({"secret": "whsec_x"}, "Unknown field 'secret'"),
    ],
)
async def test_bad_endpoints_are_refused(
    api: Client, root: Caller, body: dict[str, Any], message: str
) -> None:
    request = {"url": "https://hooks.example.com/in", "events": ["media.ready"], **body}
    response = await api.request("POST", f"{WEBHOOKS}/", token=root.token, json_body=request)
    assert response.status == 400
    assert message in response.json["error"]


async def test_only_admins_manage_webhooks(api: Client, user: Caller, root: Caller) -> None:
    hook_id = str(uuid.uuid4())
    calls = [
        ("GET", f"{WEBHOOKS}/", None),
        ("POST", f"{WEBHOOKS}/", {"url": "https://hooks.example.com/", "events": ["media.ready"]}),
        ("GET", f"{WEBHOOKS}/{hook_id}/", None),
        ("PATCH", f"{WEBHOOKS}/{hook_id}/", {"enabled": False}),
        ("DELETE", f"{WEBHOOKS}/{hook_id}/", None),
        ("POST", f"{WEBHOOKS}/{hook_id}/rotate_secret/", None),
        ("GET", f"{WEBHOOKS}/{hook_id}/deliveries/", None),
        ("POST", f"{WEBHOOKS}/{hook_id}/deliveries/{uuid.uuid4()}/redeliver/", None),
    ]
    for method, path, body in calls:
        refused = await api.request(method, path, token=user.token, json_body=body)
        assert refused.status == 403, (method, path, refused.body)
        assert refused.json["error"] == "Only admins may manage webhooks"
        anonymous = await api.request(method, path, json_body=body)
        assert anonymous.status == 401, (method, path)
        missing = await api.request(method, path, token=root.token, json_body=body)
        assert missing.status in (200, 201, 404), (method, path, missing.body)
    for webhook in (await api.request("GET", f"{WEBHOOKS}/", token=root.token)).json["results"]:
        if webhook["url"] == "https://hooks.example.com/":
            await unregister(api, root, webhook["id"])


# ---- events and deliveries


def _repeated_first(received: list[Received]) -> bool:
    """The first request the hook got came again (the same webhook-id)."""
    return bool(received) and sum(r.webhook_id == received[0].webhook_id for r in received) >= 2


async def test_an_upload_is_delivered_as_created_then_ready_after_a_503(
    api: Client, root: Caller, receiver: Receiver, user: Caller, samples: dict[str, bytes]
) -> None:
    hook = receiver.hook("ready", 503, 200)
    endpoint = await register(api, root, hook)
    try:
        uploaded = await api.upload(user.token, "photo.jpg", samples["jpg"], user.entity)
        assert uploaded.status == 201
        media_id = uploaded.json["id"]
        both = has(media_id, "media.created", "media.ready")
        # whichever event met the 503 is sent again: wait for that too, not only for both
        received = await hook.until(lambda got: both(got) and _repeated_first(got))
        assert all(r.verified == hook.secrets for r in received)  # every one, by the library
        first = received[0]
        assert first.headers["content-type"] == "application/json"
        assert first.headers["user-agent"].startswith("mediasvc-webhooks/")
        assert first.headers["webhook-signature"].startswith("v1,")
        # the 503 was retried with the same id and the very same body
        again = [r for r in received if r.webhook_id == first.webhook_id]
        assert len(again) >= 2 and {r.body for r in again} == {first.body}
        created = of_type(received, media_id, "media.created")[0].payload
        ready = of_type(received, media_id, "media.ready")[0].payload
        assert set(created) == {"type", "timestamp", "data"}
        assert created["timestamp"] <= ready["timestamp"]
        assert created["data"]["filename"] == "photo.jpg"
        assert created["data"]["entity_id"] == user.sub
        assert ready["data"]["status"] == "ready" and ready["data"]["thumbnail_url"]
        assert {v["name"] for v in ready["data"]["variants"]} >= {"thumbnail"}
        shown = await settled(api, user.token, media_id)
        assert ready["data"]["variants"] == [
            {**v, "url": ready["data"]["variants"][i]["url"]}
            for i, v in enumerate(shown["variants"])
        ]
        listed = await deliveries(api, root, endpoint["id"])
        retried = next(d for d in listed if d["event_id"] == first.webhook_id)
        assert [a["status_code"] for a in retried["attempts"]] == [503, 200]
        assert retried["state"] == "succeeded" and retried["next_attempt_at"] is None
        assert retried["attempts"][0]["error"] == "The receiver answered 503"
    finally:
        await unregister(api, root, endpoint["id"])


async def test_retries_back_off_and_show_in_the_deliveries_list(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("backoff", 500, 500, 500, 200)
    endpoint = await register(api, root, hook, ["media.created"])
    try:
        media = await upload_media(user, "notes.txt", b"hello\n", client=api)
        await hook.until(lambda got: len(got) >= 4)
        delivery = await _settled_delivery(api, root, endpoint["id"])
        assert delivery["state"] == "succeeded" and delivery["attempt_count"] == 4
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 200]
        times = [_ms(a["at"]) for a in delivery["attempts"]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps[0] >= 0.3 * 0.75 * 1000  # the base, within its jitter
        assert gaps[2] > gaps[0] * 1.5  # and growing
        assert {r.webhook_id for r in hook.received} == {delivery["event_id"]}
        assert hook.received[0].payload["data"]["id"] == media["id"]
    finally:
        await unregister(api, root, endpoint["id"])


async def test_a_receivers_retry_after_is_honoured(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("later", ("status", 503, {"Retry-After": "1"}), 200)
    endpoint = await register(api, root, hook, ["media.created"])
    try:
        await upload_media(user, "notes.txt", b"later\n", client=api)
        delivery = await _settled_delivery(api, root, endpoint["id"])
        first, second = (_ms(a["at"]) for a in delivery["attempts"])
        assert second - first >= 1000  # not the 0.3 s of the backoff
    finally:
        await unregister(api, root, endpoint["id"])


async def _settled_delivery(
    client: Client, admin: Caller, webhook_id: str, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await deliveries(client, admin, webhook_id)
        if found and all(d["state"] in ("succeeded", "failed") for d in found):
            return found[0]
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


async def test_a_failing_media_gives_media_failed(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("failed")
    endpoint = await register(api, root, hook, ["media.failed", "media.ready"])
    try:
        corrupt = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 16
        media = await upload_media(user, "broken.jpg", corrupt, client=api)
        [failed] = of_type(
            await hook.until(has(media["id"], "media.failed")), media["id"], "media.failed"
        )
        assert failed.verified == hook.secrets
        data = failed.payload["data"]
        assert data["status"] == "failed" and data["error"]
        assert data["job"]["state"] == "failed"
        assert not of_type(hook.received, media["id"], "media.ready")
    finally:
        await unregister(api, root, endpoint["id"])


async def test_a_delete_gives_media_deleted_with_the_media_as_it_was(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    """Deleted at once after the upload: the events still on the record (created, ready) are
    delivered too, with the media as it was shown before the delete."""
    hook = receiver.hook("deleted")
    endpoint = await register(api, root, hook)
    try:
        media = await upload_media(user, "notes.txt", b"bye\n", client=api, title="Bye")
        gone = await api.request("DELETE", f"{API}/{media['id']}/", token=user.token)
        assert gone.status == 204
        types = ("media.created", "media.ready", "media.deleted")
        received = await hook.until(has(media["id"], *types))
        assert all(r.verified == hook.secrets for r in received)
        [deleted] = of_type(received, media["id"], "media.deleted")
        assert deleted.payload["data"]["title"] == "Bye"
        assert deleted.payload["data"]["status"] == "ready"
        assert len({r.webhook_id for r in received}) == 3
    finally:
        await unregister(api, root, endpoint["id"])


async def test_an_expired_presigned_upload_gives_upload_expired(
    api: Client, root: Caller, receiver: Receiver, user: Caller
) -> None:
    hook = receiver.hook("expired")
    endpoint = await register(api, root, hook, ["upload.expired", "media.created"])
    try:
        body = {
            "filename": "late.png",
            "content_type": "image/png",
            "file_size": 100,
            **user.entity,
        }
        made = await api.request(
            "POST", f"{API}/presigned_upload/", token=user.token, json_body=body
        )
        assert made.status == 201, made.body
        await _expired_alone(api, hook, user, made.json["media_id"], "late.png")
    finally:
        await unregister(api, root, endpoint["id"])


async def test_an_expired_resumable_upload_gives_upload_expired(
    api: Client, hooked: Service, root: Caller, receiver: Receiver, user: Caller
) -> None:
    """tus_upload_ttl is a minute at least: the upload's expiry is moved into the past as
    the clock would move it (tests/test_tus.py does the same), then the sweep finds it."""
    hook = receiver.hook("tus-expired")
    endpoint = await register(api, root, hook, ["upload.expired", "media.created"])
    try:
        created = await tus_create(api, user, "slow.txt", 1000)
        assert created.status == 201, created.body
        path = path_of(created.headers["Location"])
        sent = await tus_patch(api, user.token, path, 0, b"x" * 400)
        assert sent.status == 204, sent.body
        media_id = path.rstrip("/").rsplit("/", 1)[-1]
        past = int(time.time() * 1000) - 60_000
        uploads = hooked.context.tus.repository
        await uploads._uploads.update_one({"_id": media_id}, {"$set": {"expires_at": past}})
        await hooked.context.repository.update(media_id, {"upload_expires_at": past})
        expired = await _expired_alone(api, hook, user, media_id, "slow.txt")
        assert expired["upload_offset"] == 400
    finally:
        await unregister(api, root, endpoint["id"])


async def _expired_alone(
    api: Client, hook: Hook, user: Caller, media_id: str, filename: str
) -> dict[str, Any]:
    """The one upload.expired of `media_id`, signed, with the pending media as it was; the
    media gone and never announced as created. Returns the event's data."""
    [expired] = of_type(
        await hook.until(has(media_id, "upload.expired"), timeout=15),
        media_id,
        "upload.expired",
    )
    assert expired.verified == hook.secrets
    data: dict[str, Any] = expired.payload["data"]
    assert data["status"] == "pending" and data["filename"] == filename
    gone = await api.request("GET", f"{API}/{media_id}/", token=user.token)
    assert gone.status == 404
    assert not of_type(hook.received, media_id, "media.created")
    return data


async def test_a_delivery_can_be_redelivered_with_the_same_id(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("again")
    endpoint = await register(api, root, hook, ["media.created"])
    try:
        await upload_media(user, "notes.txt", b"again\n", client=api)
        [first] = await hook.until(lambda got: len(got) == 1)
        delivery = await _settled_delivery(api, root, endpoint["id"])
        path = f"{WEBHOOKS}/{endpoint['id']}/deliveries/{delivery['id']}/redeliver/"
        queued = await api.request("POST", path, token=root.token)
        assert queued.status == 202, queued.body
        assert queued.json["state"] in ("pending", "sending", "succeeded")
        received = await hook.until(lambda got: len(got) == 2)
        assert received[1].webhook_id == first.webhook_id and received[1].body == first.body
        assert received[1].verified == hook.secrets
        done = await _settled_delivery(api, root, endpoint["id"])
        assert done["attempt_count"] == 2 and done["state"] == "succeeded"
        unknown = f"{WEBHOOKS}/{endpoint['id']}/deliveries/{uuid.uuid4()}/redeliver/"
        assert (await api.request("POST", unknown, token=root.token)).status == 404
    finally:
        await unregister(api, root, endpoint["id"])


async def test_a_rotated_secret_signs_beside_the_old_one(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("rotated")
    endpoint = await register(api, root, hook, ["media.created"])
    try:
        old = hook.secrets[0]
        path = f"{WEBHOOKS}/{endpoint['id']}/rotate_secret/"
        rotated = await api.request("POST", path, token=root.token)
        assert rotated.status == 200, rotated.body
        new = rotated.json["secret"]
        assert new != old and new.startswith("whsec_")
        hook.secrets = [old, new]
        await upload_media(user, "notes.txt", b"rotated\n", client=api)
        [signed] = await hook.until(lambda got: len(got) == 1)
        assert signed.verified == [old, new]  # each secret alone verifies it
        assert len(signed.headers["webhook-signature"].split(" ")) == 2
        read = await api.request("GET", f"{WEBHOOKS}/{endpoint['id']}/", token=root.token)
        assert "secret" not in read.json
    finally:
        await unregister(api, root, endpoint["id"])


async def test_an_endpoint_failing_too_long_is_disabled_until_enabled_again(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("down", 500)
    endpoint = await register(api, root, hook, ["media.created"])
    location = f"{WEBHOOKS}/{endpoint['id']}/"
    try:
        await upload_media(user, "notes.txt", b"down\n", client=api)
        deadline = time.monotonic() + 15
        while True:
            shown = (await api.request("GET", location, token=root.token)).json
            if not shown["enabled"]:
                break
            assert time.monotonic() < deadline, shown
            await asyncio.sleep(0.1)
        assert "failed for" in shown["disabled_reason"]
        delivery = await _settled_delivery(api, root, endpoint["id"])
        assert delivery["state"] == "failed"
        assert delivery["attempts"][-1]["error"] in (
            "The receiver answered 500",
            "The endpoint is disabled; not sent",
        )
        enabled = await api.request(
            "PATCH", location, token=root.token, json_body={"enabled": True}
        )
        assert enabled.json["enabled"] is True and enabled.json["disabled_reason"] is None
    finally:
        await unregister(api, root, endpoint["id"])


async def test_a_redirect_is_not_followed(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    target = receiver.hook("target")
    hook = receiver.hook("moved", ("redirect", target.url), 200)
    endpoint = await register(api, root, hook, ["media.created"])
    try:
        await upload_media(user, "notes.txt", b"moved\n", client=api)
        await hook.until(lambda got: len(got) == 2)  # the 302, then the retry answered 200
        delivery = await _settled_delivery(api, root, endpoint["id"])
        first = delivery["attempts"][0]
        assert first["status_code"] == 302
        assert first["error"] == f"Redirect (302) to {target.url} not followed"
        assert target.received == []
    finally:
        await unregister(api, root, endpoint["id"])


async def test_a_huge_answer_is_cut(
    api: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("huge", "huge")
    endpoint = await register(api, root, hook, ["media.created"])
    try:
        await upload_media(user, "notes.txt", b"huge\n", client=api)
        delivery = await _settled_delivery(api, root, endpoint["id"])
        [attempt] = delivery["attempts"]
        assert delivery["state"] == "succeeded" and attempt["status_code"] == 200
        assert "not read beyond 65536 bytes" in attempt["error"]
        deadline = time.monotonic() + 10
        while not hook.cut:  # the receiver could not write its 64 MiB
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await unregister(api, root, endpoint["id"])


# ---- private addresses


@pytest.fixture(scope="module")
async def guarded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    """A service with the default refusal of non-public addresses."""
    settings = service_settings(
        tmp_path_factory.mktemp("guarded"), **{**FAST, "webhook_allow_private": False}
    )
    running = await start_service(settings)
    yield Client(f"http://127.0.0.1:{running.port}")
    await running.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/in",
        "http://10.1.2.3/in",
        "https://192.168.0.10/in",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/in",
        "http://[::ffff:127.0.0.1]/in",
        "http://0.0.0.0/in",
    ],
)
async def test_a_non_public_ip_literal_is_refused_at_creation(
    guarded: Client, root: Caller, url: str
) -> None:
    body = {"url": url, "events": ["media.created"]}
    response = await guarded.request("POST", f"{WEBHOOKS}/", token=root.token, json_body=body)
    assert response.status == 400
    assert "must not point at a non-public address" in response.json["error"]


async def test_a_name_that_resolves_to_loopback_is_refused_when_connecting(
    guarded: Client, root: Caller, receiver: Receiver, user: Caller, upload_media: Uploader
) -> None:
    hook = receiver.hook("private", host="localhost")
    endpoint = await register(guarded, root, hook, ["media.created"])
    try:
        await upload_media(user, "notes.txt", b"private\n", client=guarded)
        deadline = time.monotonic() + 15
        while True:
            found = await deliveries(guarded, root, endpoint["id"])
            if found and found[0]["attempts"]:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        attempt = found[0]["attempts"][0]
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("localhost has no public address")
        assert "127.0.0.1" in attempt["error"]
        assert hook.received == []
    finally:
        await unregister(guarded, root, endpoint["id"])


# ---- crashes


def _serve(data: Path, port: int | None = None, **settings: str) -> Server:
    every = {
        "webhook_allow_private": "true",
        "webhook_poll_interval": "0.05",
        "webhook_retry_base": "0.2",
        "webhook_retry_max_interval": "0.5",
        "webhook_timeout": "1",
        "webhook_lease": "2",
        **settings,
    }
    return Server(data, port=port, **every)


def _admin_token(server: Server) -> str:
    out = subprocess.run(
        [str(BIN / "mediasvc"), "token", "--sub", "root", "--role", "admin",
         "--data-dir", str(server.data_dir)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip()


def _register_on(server: Server, token: str, hook: Hook, events: list[str]) -> dict[str, Any]:
    body = json.dumps({"url": hook.url, "events": events}).encode()
    status, created = server.request("POST", f"{WEBHOOKS}/", token, body, "application/json")
    assert status == 201, created
    hook.secrets = [str(created["secret"])]
    return created


def _deliveries_on(server: Server, token: str, webhook_id: object) -> list[dict[str, Any]]:
    status, page = server.request("GET", f"{WEBHOOKS}/{webhook_id}/deliveries/", token)
    assert status == 200, page
    results: list[dict[str, Any]] = page["results"]  # type: ignore[assignment]
    return results


def test_a_server_killed_between_the_change_and_the_delivery_delivers_after_restart(
    tmp_path: Path,
) -> None:
    """The receiver is down when the media is made; the server is killed before its relay
    has even looked (a long poll interval), restarted, and the receiver comes up: both
    events arrive, signed with the secret made before the crash."""
    receiver = Receiver()  # not listening yet: connections are refused
    hook = receiver.hook("crash")
    data = tmp_path / "var"
    first = _serve(data, webhook_poll_interval="30")
    try:
        token, sub = _admin_token(first), str(uuid.uuid4())
        endpoint = _register_on(first, token, hook, ["media.created", "media.ready"])
        media = first.upload(first.token(sub), sub, "notes.txt", b"survives\n")
        assert _deliveries_on(first, token, endpoint["id"]) == []  # still in the outbox
    finally:
        first.kill()
    receiver.start()
    second = _serve(data)
    try:
        received = hook.wait_for(has(str(media["id"]), "media.created", "media.ready"))
        assert all(r.verified == hook.secrets for r in received)
        assert {r.payload["data"]["id"] for r in received} == {media["id"]}
    finally:
        second.stop()
        receiver.stop()


def test_a_delivery_leased_by_a_killed_process_is_sent_by_another(tmp_path: Path) -> None:
    """The first attempt hangs at the receiver and its server is killed mid-attempt; once the
    lease lapses the next server sends the same delivery (same webhook-id, same body)."""
    receiver = Receiver().start()
    hook = receiver.hook("lease", "hang", 200)
    data = tmp_path / "var"
    try:
        first = _serve(data, webhook_timeout="3", webhook_lease="4")
        try:
            token, sub = _admin_token(first), str(uuid.uuid4())
            endpoint = _register_on(first, token, hook, ["media.created"])
            first.upload(first.token(sub), sub, "notes.txt", b"leased\n")
            hook.wait_for(lambda got: len(got) == 1)  # the attempt is in flight
        finally:
            first.kill()
        second = _serve(data)
        try:
            cut, sent = hook.wait_for(lambda got: len(got) == 2)
            assert (sent.webhook_id, sent.body) == (cut.webhook_id, cut.body)
            assert cut.verified == sent.verified == hook.secrets
            deadline = time.monotonic() + 10
            while (found := _deliveries_on(second, token, endpoint["id"]))[0][
                "state"
            ] != "succeeded":
                assert time.monotonic() < deadline, found
                time.sleep(0.05)
            assert [a["status_code"] for a in found[0]["attempts"]] == [200]
        finally:
            second.stop()
    finally:
        receiver.stop()
