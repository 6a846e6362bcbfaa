"""Health, readiness, metrics, backpressure, and 503s when a dependency is down."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mediasvc.app import Service, start_service
from mediasvc.embedded_db import EmbeddedMongo, free_loopback_port
from mediasvc.settings import Settings
from tests.support.client import API, Client
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token


async def test_healthz_and_readyz(client: Client) -> None:
    health = await client.request("GET", "/healthz")
    assert health.status == 200 and health.json == {"status": "ok"}
    ready = await client.request("GET", "/readyz")
    assert ready.status == 200
    assert ready.json == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}


async def test_metrics_are_prometheus_text(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    assert (await client.upload(user.token, "m.jpg", samples["jpg"], user.entity)).status == 201
    response = await client.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.body.decode()
    for name in (
        'mediasvc_http_requests_total{method="POST",route="UploadHandler",status="201"}',
        "mediasvc_http_request_duration_seconds_bucket",
        'mediasvc_upload_bytes_total{kind="direct"}',
        "mediasvc_uploads_active",
        "mediasvc_pool_workers_busy",
        'mediasvc_jobs{state="queued"}',
        "mediasvc_job_duration_seconds",
    ):
        assert name in text, name


def _settings(tmp_path: Path, **changes: Any) -> Settings:
    quiet = {"log_level": "critical", "processing_enabled": False, "sweep_interval": 0}
    return service_settings(tmp_path / "var", **{"shutdown_timeout": 1, **quiet, **changes})


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[tuple[Service, Client]]:
    service = await start_service(_settings(tmp_path, max_concurrent_uploads=1, upload_slot_wait=0))
    yield service, Client(f"http://127.0.0.1:{service.port}")
    await service.stop()


async def test_too_many_concurrent_uploads_is_429(
    limited: tuple[Service, Client], samples: dict[str, bytes]
) -> None:
    service, client = limited
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))
    _reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(
        (
            f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {caller.token}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
        ).encode()
    )
    await writer.drain()
    for _ in range(100):  # the slow upload holds the only slot
        if service.context.uploads.count == 1:
            break
        await asyncio.sleep(0.01)
    busy = await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)
    assert busy.status == 429
    assert busy.json == {"error": "Too many uploads in progress; try again shortly"}
    assert busy.headers["Retry-After"] == "1"
    writer.close()
    for _ in range(100):
        if service.context.uploads.count == 0:
            break
        await asyncio.sleep(0.01)
    assert (await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)).status == 201


async def test_database_down_is_a_quick_503_and_back_is_served(tmp_path: Path) -> None:
    port = free_loopback_port()
    database = _start_database(tmp_path, port)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    service = await start_service(_settings(tmp_path, mongodb_uri=uri))
    client = Client(f"http://127.0.0.1:{service.port}")
    sub = str(uuid.uuid4())
    token = make_token(sub)
    try:
        assert (await client.request("GET", f"{API}/", token=token)).status == 200
        database.kill()
        database.wait()
        started = time.monotonic()
        response = await client.request("GET", f"{API}/", token=token)
        assert time.monotonic() - started < 2.5
        assert response.status == 503
        assert response.json == {"error": "Database unavailable, try again shortly"}
        assert response.headers["Retry-After"] == "2"
        ready = await client.request("GET", "/readyz")
        assert ready.status == 503 and ready.json["checks"]["database"] != "ok"
        assert (await client.request("GET", "/healthz")).status == 200
        # Back on the same address: served again without a restart of the service. (This
        # also keeps the driver's monitor off a reconnect when the client closes: it leaks
        # the socket of a connect cancelled by close, PYTHON-5867.)
        database = _start_database(tmp_path, port)
        deadline = time.monotonic() + 20
        while (status := (await client.request("GET", "/readyz")).status) != 200:
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.2)
        assert (await client.request("GET", f"{API}/", token=token)).status == 200
    finally:
        await service.stop()
        if database.poll() is None:
            database.kill()
            database.wait()


def _start_database(folder: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        EmbeddedMongo(folder / "db", in_memory=True, start_timeout=20).command(port),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_storage_gone_is_not_ready(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    service = await start_service(settings)
    client = Client(f"http://127.0.0.1:{service.port}")
    try:
        shutil.rmtree(settings.storage_path)
        ready = await client.request("GET", "/readyz")
        assert ready.status == 503
        assert ready.json["checks"] == {"database": "ok", "storage": "unavailable"}
    finally:
        await service.stop()


async def test_idle_and_slow_connections_are_cut_off(tmp_path: Path) -> None:
    service = await start_service(_settings(tmp_path, idle_connection_timeout=1, body_timeout=1))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # idle: closed
        assert 0.5 < time.monotonic() - started < 4
        writer.close()
        token = make_token(str(uuid.uuid4()))
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(
            (
                f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n"
                "--b\r\n"
            ).encode()
        )
        await writer.drain()
        started = time.monotonic()
        await asyncio.wait_for(reader.read(), timeout=5)  # a body that stalls: cut off
        assert time.monotonic() - started < 4
        writer.close()
        for _ in range(100):
            if service.context.uploads.count == 0:
                break
            await asyncio.sleep(0.02)
        assert service.context.uploads.count == 0
        assert list(service.context.settings.spool_path.glob("upload-*")) == []
    finally:
        await service.stop()
