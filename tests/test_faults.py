"""Faults: nothing is lost and nothing is left behind when a part dies or requests race."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mediasvc.app import Service, start_service
from tests.conftest import API, Caller, Client, make_token, service_settings


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
    assert '{"error": "No upload is expected at this URL"}' in head
    assert [p for p in settings.storage_path.rglob("*") if p.is_file()] == []
    await _wait_for(lambda: not list(settings.spool_path.glob("upload-*")))
    again = await client.request("PUT", answer["upload_url"], body=content,
                                 headers=answer["upload_headers"])  # fmt: skip
    assert again.status == 404
