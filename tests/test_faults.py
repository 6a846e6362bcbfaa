"""Faults: nothing is lost and nothing is left behind when a part dies or requests race."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mediasvc.app import Service, start_service
from mediasvc.embedded_db import EmbeddedDatabaseError
from tests.support.client import API, Client, multipart_body
from tests.support.media import settled
from tests.support.process import BIN, Server, make_video, service_env
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, seaweedfs
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token


def _quiet(tmp_path: Path, **changes: Any) -> Any:
    defaults = {"log_level": "critical", "sweep_interval": 0, "shutdown_timeout": 1}
    return service_settings(tmp_path / "var", **{**defaults, **changes})


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[tuple[Service, Client]]:
    """A service that queues jobs but never runs them (nothing settles under the test)."""
    service = await start_service(_quiet(tmp_path, processing_enabled=False, image_operations=()))
    yield service, Client(f"http://127.0.0.1:{service.port}")
    await service.stop()


def _caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


async def test_concurrent_process_requests_queue_one_job(
    idle: tuple[Service, Client], samples: dict[str, bytes]
) -> None:
    service, client = idle
    caller = _caller()
    uploaded = await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)
    assert uploaded.status == 201 and uploaded.json["status"] == "ready"
    media_id = uploaded.json["id"]
    body = {"operations": ["thumbnail"]}
    answers = await asyncio.gather(
        *(
            client.request("POST", f"{API}/{media_id}/process/", token=caller.token, json_body=body)
            for _ in range(12)
        )
    )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [202] + [409] * 11
    accepted = next(a for a in answers if a.status == 202)
    assert accepted.json["status"] == "processing" and accepted.json["job"]["state"] == "queued"
    refused = next(a for a in answers if a.status == 409)
    assert refused.json == {"error": "Processing of this media is already queued"}
    jobs = service.context.repository.jobs_collection
    assert await jobs.count_documents({"media_id": media_id}) == 1


async def _wait_for(condition: Any, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_presigned_put_after_delete_is_refused_and_stores_nothing(
    idle: tuple[Service, Client], samples: dict[str, bytes]
) -> None:
    """The PUT is under way (signature and record checked) when the media is deleted."""
    service, client = idle
    settings = service.context.settings
    caller = _caller()
    content = samples["jpg"]
    request = {"filename": "p.jpg", "content_type": "image/jpeg", "file_size": len(content)}
    answer = (
        await client.request(
            "POST", f"{API}/presigned_upload/", token=caller.token,
            json_body={**request, **caller.entity},
        )
    ).json  # fmt: skip
    url = urlsplit(answer["upload_url"])
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(content)}\r\n\r\n".encode()
        + content[:100]
    )
    await writer.drain()
    await _wait_for(lambda: list(settings.spool_path.glob("upload-*")))  # the PUT is accepted
    deleted = await client.request("DELETE", f"{API}/{answer['media_id']}/", token=caller.token)
    assert deleted.status == 204
    writer.write(content[100:])
    await writer.drain()
    head = (await asyncio.wait_for(reader.read(65536), 10)).decode("latin-1")
    writer.close()
    assert head.startswith("HTTP/1.1 404"), head[:200]
    assert '{"error":"No upload is expected at this URL"}' in head
    assert [p for p in settings.storage_path.rglob("*") if p.is_file()] == []
    await _wait_for(lambda: not list(settings.spool_path.glob("upload-*")))
    again = await client.request("PUT", answer["upload_url"], body=content,
                                 headers=answer["upload_headers"])  # fmt: skip
    assert again.status == 404


# ---- the embedded database dies, or left a pid file behind


async def _answers_within(client: Client, token: str, seconds: float) -> tuple[float, set[str]]:
    """Poll a list request and /readyz until the list answers 200; the time it took and the
    database states readyz reported meanwhile."""
    started = time.monotonic()
    seen: set[str] = set()
    while time.monotonic() - started < seconds:
        ready = await client.request("GET", "/readyz")
        seen.add(ready.json["checks"]["database"])
        if (await client.request("GET", f"{API}/", token=token)).status == 200:
            return time.monotonic() - started, seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer within {seconds}s; readyz said {seen}")


async def _wait_until_ready(client: Client, seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        if (await client.request("GET", "/readyz")).status == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not ready in time")


@pytest.mark.parametrize("in_memory", [True, False])
async def test_killed_embedded_database_is_restarted(
    tmp_path: Path, samples: dict[str, bytes], in_memory: bool
) -> None:
    service = await start_service(_quiet(tmp_path, embedded_db_in_memory=in_memory))
    client = Client(f"http://127.0.0.1:{service.port}")
    caller = _caller()
    try:
        kept = await client.upload(caller.token, "a.txt", samples["txt"], caller.entity)
        assert kept.status == 201
        embedded = service.context.embedded_db
        assert embedded is not None and embedded.pid is not None
        os.kill(embedded.pid, signal.SIGKILL)
        took, seen = await _answers_within(client, caller.token, 10)
        assert "restarting" in seen or "unavailable" in seen, seen
        await _wait_until_ready(client, 10)
        assert embedded.restarts == 1
        got = await client.request("GET", f"{API}/{kept.json['id']}/", token=caller.token)
        assert got.status == (404 if in_memory else 200)  # a file-backed one keeps its data
        again = await client.upload(caller.token, "b.txt", samples["txt"], caller.entity)
        assert again.status == 201
        indexes = await service.context.repository.jobs_collection.index_information()
        unique = [i["key"] for i in indexes.values() if i.get("unique")]
        assert [("active_slot", 1)] in unique  # rebuilt in a fresh in-memory database
        print(f"requests answered again {took:.2f}s after the SIGKILL")
    finally:
        await service.stop()


async def test_restarts_back_off_while_the_database_cannot_start(tmp_path: Path) -> None:
    """Its port is taken when it dies: starts fail (readyz says restarting, answers are 503)
    and are retried with growing waits; once the port is free it comes back by itself."""
    settings = _quiet(tmp_path, embedded_db_restart_delay=0.1, embedded_db_restart_max_delay=0.8)
    service = await start_service(settings)
    client, caller = Client(f"http://127.0.0.1:{service.port}"), _caller()
    embedded = service.context.embedded_db
    assert embedded is not None and embedded.pid is not None
    blocker = socket.socket()
    try:
        os.kill(embedded.pid, signal.SIGKILL)
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):  # until the killed database has let go of its port
            with contextlib.suppress(OSError):
                blocker.bind(("127.0.0.1", embedded.port))
                break
            await asyncio.sleep(0.01)
        blocker.listen()
        await _wait_for(lambda: embedded.failed_restarts >= 3, timeout=20)
        ready = await client.request("GET", "/readyz")
        assert ready.status == 503 and ready.json["checks"]["database"] == "restarting"
        assert (await client.request("GET", f"{API}/", token=caller.token)).status == 503
        blocker.close()
        took, _ = await _answers_within(client, caller.token, 10)
        await _wait_until_ready(client, 10)
        assert embedded.restarts == 1
        print(f"back {took:.2f}s after the port was free, {embedded.failed_restarts} failed starts")
    finally:
        blocker.close()
        await service.stop()


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited but is not reaped yet."""
    child = subprocess.Popen(["true"])
    for _ in range(500):
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return child
        time.sleep(0.01)
    raise AssertionError("the child did not become a zombie")


@pytest.mark.parametrize("holder", ["unrelated live process", "zombie"])
async def test_stale_pid_file_never_stops_startup(tmp_path: Path, holder: str) -> None:
    """After a SIGKILL the pid file may name a live process (PID reuse) or a zombie."""
    process = subprocess.Popen(["sleep", "60"]) if holder != "zombie" else _zombie()
    settings = _quiet(tmp_path)
    pid_file = settings.data_path / "db" / "nx-27017.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{process.pid}\n")
    try:
        service = await start_service(settings)
        try:
            assert (
                await Client(f"http://127.0.0.1:{service.port}").request("GET", "/readyz")
            ).status == 200
            embedded = service.context.embedded_db
            assert embedded is not None
            assert pid_file.read_text().strip() == str(embedded.pid)
        finally:
            await service.stop()
        assert process.poll() is None or holder == "zombie"  # left alone
    finally:
        process.kill()
        process.wait()


async def test_a_live_database_of_the_data_folder_is_not_taken_over(tmp_path: Path) -> None:
    settings = _quiet(tmp_path, processing_enabled=False)
    service = await start_service(settings)
    try:
        with pytest.raises(EmbeddedDatabaseError, match=r"already runs .* another mediasvc"):
            await start_service(settings)
        assert (
            await Client(f"http://127.0.0.1:{service.port}").request("GET", "/readyz")
        ).status == 200
    finally:
        await service.stop()


# ---- killed server processes leave spool files and job folders behind


def _start_upload(server: Server, token: str, sub: str, size: int) -> tuple[socket.socket, bytes]:
    """An upload whose body is only partly sent (the rest is for the caller to send)."""
    body, content_type = multipart_body(
        {"entity_type": "user", "entity_id": sub}, [("file", "big.txt", b"x" * size)]
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        (
            f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[: len(body) // 2]
    )
    sock.settimeout(30)
    return sock, body[len(body) // 2 :]


def _wait_for_paths(pattern: str, folder: Path, count: int, timeout: float = 20) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern))
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} x {pattern} not in {folder}: {list(folder.iterdir())}")


def test_leftovers_of_killed_servers_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """Servers share one spool folder. One is killed mid-job, another mid-upload: a server
    started later removes their leftovers (at start-up and by its periodic sweep) while
    the upload of a live server goes on untouched."""
    spool = tmp_path / "spool"
    shared = {"spool_dir": str(spool), "dispatcher_poll_interval": "0.2"}
    sub = str(uuid.uuid4())
    live = Server(tmp_path / "live", **shared)
    victim = Server(tmp_path / "victim", **shared)
    later = None
    try:
        token = live.token(sub)
        upload, rest = _start_upload(live, token, sub, 4 * 1024 * 1024)
        (live_file,) = _wait_for_paths("upload-*", spool, 1)
        victim_token = victim.token(sub)
        victim.upload(victim_token, sub, "clip.mp4", make_video(tmp_path))
        victim.wait_for_descendant("ffmpeg")
        (job_dir,) = _wait_for_paths("job-*", spool, 1)
        victim.kill()
        later = Server(tmp_path / "victim", sweep_interval="0.5", **shared)
        assert not job_dir.exists(), "the killed server's job folder is still there"
        assert live_file.exists(), "a live server's spool file was removed"
        upload.sendall(rest)
        assert upload.recv(65536).startswith(b"HTTP/1.1 201")
        upload.close()
        upload, _ = _start_upload(live, token, sub, 4 * 1024 * 1024)
        (orphan,) = _wait_for_paths("upload-*", spool, 1)
        live.kill()
        upload.close()
        deadline = time.monotonic() + 10  # one sweep removes the file, then the owner's lock
        while (orphan.exists() or len(_owner_locks(spool)) > 1) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not orphan.exists(), "the periodic sweep left a dead server's spool file"
        assert [p.name for p in spool.iterdir() if not p.name.startswith("owner-")] == []
        assert len(_owner_locks(spool)) == 1  # the later server's own
    finally:
        for server in (live, victim, later):
            if server is not None:
                server.kill()


def _owner_locks(spool: Path) -> list[Path]:
    return list(spool.glob("owner-*.lock"))


# ---- file deletions while the storage is down


async def test_deletes_while_s3_is_down_are_done_when_it_is_back(
    tmp_path: Path, samples: dict[str, bytes]
) -> None:
    """DELETE with SeaweedFS stopped answers 204 and records the files; once S3 is back the
    sweep deletes the original and its variants. A presigned PUT to S3 after its media was
    deleted leaves an object that the sweep removes once the URL has expired."""
    weed = tmp_path / "weed"
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(seaweedfs(weed))
        settings = _quiet(
            tmp_path, storage="s3", s3_bucket="deletions", s3_endpoint_url=first.endpoint,
            s3_access_key=S3_ACCESS_KEY, s3_secret_key=S3_SECRET_KEY, s3_addressing_style="path",
            s3_create_bucket=True, s3_max_attempts=1, dispatcher_poll_interval=0.1,
        )  # fmt: skip
        service = await start_service(settings)
        try:
            await _delete_with_s3_down_then_sweep(service, stack, first, weed, samples)
        finally:
            await service.stop()


async def _delete_with_s3_down_then_sweep(
    service: Service,
    stack: contextlib.ExitStack,
    first: S3Server,
    weed: Path,
    samples: dict[str, bytes],
) -> None:
    client, caller = Client(f"http://127.0.0.1:{service.port}"), _caller()
    blobs, sweeper = service.context.blobs, service.context.sweeper
    uploaded = await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)
    media = await settled(client, caller.token, uploaded.json["id"])
    record = await service.context.repository.get(media["id"])
    assert record is not None
    keys = [record.storage_key, *(v["key"] for v in record.variants)]
    assert len(keys) == 4 and all([await blobs.exists(k) for k in keys])  # original + 3 variants

    request = {"filename": "p.jpg", "content_type": "image/jpeg", "file_size": 3}
    body = {**request, **caller.entity}
    answer = (
        await client.request("POST", f"{API}/presigned_upload/", token=caller.token, json_body=body)
    ).json
    gone = await client.request("DELETE", f"{API}/{answer['media_id']}/", token=caller.token)
    assert gone.status == 204
    put = await client.request("PUT", answer["upload_url"], body=b"abc",
                               headers=answer["upload_headers"])  # fmt: skip
    assert put.status == 200  # S3 cannot know the media is gone
    assert await blobs.exists(answer["storage_key"])
    confirm = f"{API}/{answer['media_id']}/confirm_upload/"
    assert (await client.request("POST", confirm, token=caller.token)).status == 404

    _stop(first, stack)  # SeaweedFS goes down
    deleted = await client.request("DELETE", f"{API}/{media['id']}/", token=caller.token)
    assert deleted.status == 204
    report = await sweeper.sweep()
    assert report["pending_deletions"] == 5 and "errors" in report

    with contextlib.ExitStack() as again:
        back = again.enter_context(seaweedfs(weed, first.ports))  # with the same objects
        await _sweep_when_back(service, keys, answer)
        _stop(back, again)


def _stop(server: S3Server, stack: contextlib.ExitStack) -> None:
    """SIGKILL a SeaweedFS (it takes 15 s to stop on SIGTERM), then leave its context."""
    server.process.kill()
    server.process.wait()
    stack.close()


async def _sweep_when_back(service: Service, keys: list[str], answer: dict[str, Any]) -> None:
    blobs, sweeper = service.context.blobs, service.context.sweeper
    assert all([await blobs.exists(k) for k in keys])
    report = await sweeper.sweep()
    assert report["deleted_files"] == 4 and report["pending_deletions"] == 1, report
    assert not any([await blobs.exists(k) for k in keys])
    assert await blobs.exists(answer["storage_key"])  # its URL may still put it back
    expired = answer_expiry_ms(service, answer) + 1
    assert await service.context.media.deletions.retry(now=expired) == {
        "deleted_files": 1, "pending_deletions": 0,
    }  # fmt: skip
    assert not await blobs.exists(answer["storage_key"])


def answer_expiry_ms(service: Service, answer: dict[str, Any]) -> int:
    """When a presigned URL is dead for good: its expiry plus the grace of the sweep."""
    expires = datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00"))
    return int(expires.timestamp() * 1000) + service.context.settings.pending_upload_grace * 1000


# ---- `mediasvc gc` beside a running server


def _gc(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "mediasvc"), "gc", "--data-dir", str(data)],
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gc_beside_a_running_server_uses_its_database(tmp_path: Path) -> None:
    data = tmp_path / "var"
    server = Server(data)
    try:
        sub = str(uuid.uuid4())
        token = server.token(sub)
        media = server.upload(token, sub, "notes.txt", b"hello\n")
        (data / "spool" / "upload-123-0123abcd-leftover").write_bytes(b"x")  # a dead owner's
        result = _gc(data)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["orphaned_spool_entries"] == 1 and report["pending_deletions"] == 0
        assert "Traceback" not in result.stderr
        status, again = server.request("GET", f"{API}/{media['id']}/", token)
        assert status == 200 and again["id"] == media["id"]  # the server is unharmed
    finally:
        server.stop()
    assert list((data / "spool").iterdir()) == []  # a clean stop gives its lock file up
    result = _gc(data)  # no server now: gc starts the database itself, on the same data
    assert result.returncode == 0, result.stderr
