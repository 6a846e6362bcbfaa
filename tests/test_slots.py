"""Upload slots: an upload over the limit waits unread for a slot, then gets a readable 429;
a stalled body is answered 408 and frees its slot; bursts get only 201s and readable 429s."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediasvc.app import Service, start_service
from mediasvc.lifecycle import Slots
from tests.support.client import API, multipart_body
from tests.support.early import MB, read_answer, send_head
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token

CLIENT_TIMEOUT = 60


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start a service with some settings changed; stopped after the test."""
    started: list[Service] = []

    async def _start(**changes: Any) -> Service:
        settings = service_settings(
            tmp_path / f"var{len(started)}",
            processing_enabled=False,
            sweep_interval=0,
            log_level="critical",
            linger_idle_timeout=0.5,
            **changes,
        )
        started.append(await start_service(settings))
        return started[-1]

    yield _start
    for service in started:
        await service.stop()


@pytest.fixture
def caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


def _upload_head(caller: Caller, length: int, boundary: str = "b") -> str:
    return (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {caller.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )


async def _until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def _hold_slot(service: Service, caller: Caller) -> asyncio.StreamWriter:
    """An upload that sends its head and 3 bytes, then nothing: it holds a slot."""
    held = service.context.uploads.count
    _reader, writer = await send_head(service.port, _upload_head(caller, 100_000) + "--b")
    await _until(lambda: service.context.uploads.count == held + 1)
    return writer


async def test_an_upload_waits_unread_for_a_slot(start: Callable[..., Any], caller: Caller) -> None:
    service = await start(max_concurrent_uploads=1, upload_slot_wait=60)
    holder = await _hold_slot(service, caller)
    text = b"plain text notes\n" * (20 * MB // 17)
    body, content_type = multipart_body(caller.entity, [("file", "notes.txt", text)], "w")
    reader, writer = await send_head(
        service.port,
        _upload_head(caller, len(body), "w").replace(
            "multipart/form-data; boundary=w", content_type
        ),
    )
    try:
        await _until(lambda: len(service.context.uploads._waiters) == 1)
        writer.write(body)
        with pytest.raises(TimeoutError):  # nothing reads it: TCP holds the client back
            await asyncio.wait_for(writer.drain(), 2)
        holder.close()  # the slot comes free: now the waiting body is read
        await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT)
        answer = await read_answer(reader, CLIENT_TIMEOUT)
        assert answer.status == 201, answer.body
        assert answer.json["file_size"] == len(text)  # type: ignore[index]
    finally:
        writer.close()
        holder.close()


async def test_no_slot_in_time_is_a_readable_429(
    start: Callable[..., Any], caller: Caller, samples: dict[str, bytes]
) -> None:
    service = await start(max_concurrent_uploads=1, upload_slot_wait=1)
    holder = await _hold_slot(service, caller)
    content = samples["jpg"] + b"\0" * (5 * MB)
    body, content_type = multipart_body(caller.entity, [("file", "a.jpg", content)])
    headers = {"Authorization": f"Bearer {caller.token}", "Content-Type": content_type}
    try:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
            started = time.monotonic()
            response = await http.post(
                f"http://127.0.0.1:{service.port}{API}/upload/", content=body, headers=headers
            )
            assert time.monotonic() - started >= 0.9  # it waited for a slot first
        assert response.status_code == 429
        assert response.json() == {"error": "Too many uploads in progress; try again shortly"}
        assert response.headers["Retry-After"] == "1"
        assert response.headers["Connection"] == "close"
    finally:
        holder.close()


async def test_stalled_bodies_are_answered_408_and_free_their_slots(
    start: Callable[..., Any], caller: Caller, samples: dict[str, bytes]
) -> None:
    service = await start(max_concurrent_uploads=2, upload_stall_timeout=1, upload_slot_wait=30)
    stalled = [
        await send_head(service.port, _upload_head(caller, 100_000) + "--b") for _ in range(2)
    ]
    await _until(lambda: service.context.uploads.count == 2)
    try:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
            body, content_type = multipart_body(caller.entity, [("file", "a.jpg", samples["jpg"])])
            response = await http.post(
                f"http://127.0.0.1:{service.port}{API}/upload/",
                content=body,
                headers={"Authorization": f"Bearer {caller.token}", "Content-Type": content_type},
            )
        assert response.status_code == 201, response.text
        for reader, _writer in stalled:
            answer = await read_answer(reader)
            assert answer.status == 408
            assert answer.json == {"error": "No body data received for 1 seconds"}
            assert answer.headers["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT) == b""  # then closed
        await _until(lambda: service.context.uploads.count == 0)
        assert list(service.context.settings.spool_path.glob("upload-*")) == []
    finally:
        for _reader, writer in stalled:
            writer.close()


async def test_a_burst_gets_only_201s_and_readable_429s(
    start: Callable[..., Any], caller: Caller, samples: dict[str, bytes]
) -> None:
    service = await start(max_concurrent_uploads=2, upload_slot_wait=0.2)
    content = samples["jpg"] + b"\0" * (2 * MB)
    body, content_type = multipart_body(caller.entity, [("file", "a.jpg", content)])
    headers = {"Authorization": f"Bearer {caller.token}", "Content-Type": content_type}
    url = f"http://127.0.0.1:{service.port}{API}/upload/"
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as http:
        responses = await asyncio.gather(
            *(http.post(url, content=body, headers=headers) for _ in range(16))
        )
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {201, 429} and 201 in statuses, statuses
    for response in responses:
        if response.status_code == 429:
            assert response.json()["error"].startswith("Too many uploads")
            assert response.headers["Retry-After"] == "1"
    await _until(lambda: service.context.uploads.count == 0)


async def test_slots_are_handed_over_in_order_and_waiters_time_out() -> None:
    slots = Slots()
    assert await slots.acquire(1, 0)
    assert not await slots.acquire(1, 0)  # full, and no waiting asked for
    order: list[str] = []

    async def wait(name: str, timeout: float) -> None:
        if await slots.acquire(1, timeout):
            order.append(name)

    first = asyncio.create_task(wait("first", 30))
    second = asyncio.create_task(wait("second", 30))
    late = asyncio.create_task(wait("late", 0.05))
    await asyncio.sleep(0.2)
    assert late.done() and order == []  # timed out in line
    slots.release()
    await first
    assert order == ["first"] and slots.count == 1
    second.cancel()  # a waiter that goes away gives up its place
    await asyncio.gather(second, return_exceptions=True)
    slots.release()
    assert slots.count == 0 and await slots.acquire(1, 0)


async def test_io_threads_run_as_batch_work(start: Callable[..., Any]) -> None:
    """The I/O pool's threads are SCHED_BATCH, so their wake-ups never preempt the event
    loop; the loop's own thread keeps the default policy."""
    service = await start()
    pool = service.context.io_executor
    policy = await asyncio.get_running_loop().run_in_executor(pool, os.sched_getscheduler, 0)
    assert policy == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
