"""Early answers reach real clients: an over-limit image refused while it streams, refusals
before the body (401, 413 by Content-Length), with and without `Expect: 100-continue`, by
curl, httpx, requests, aiohttp and Node's fetch; keep-alive after refusals; the 431 for a
huge header block; metric labels from a fixed set."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests

from mediasvc.app import Service, start_service
from tests.support.client import API, Client
from tests.support.early import MB, oversized_image, read_answer, send_head
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token

TOO_BIG = {"error": "File size exceeds maximum allowed size of 10.0MB for image files"}
CLIENT_TIMEOUT = 60


@pytest.fixture(scope="module")
async def early(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    settings = service_settings(
        tmp_path_factory.mktemp("early"),
        processing_enabled=False,
        sweep_interval=0,
        log_level="critical",
    )
    service = await start_service(settings)
    yield service
    await service.stop()


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, bytes]) -> Path:
    return oversized_image(tmp_path_factory.mktemp("big"), samples["jpg"])


@pytest.fixture
def caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


def _url(service: Service, path: str) -> str:
    return f"http://127.0.0.1:{service.port}{path}"


async def _curl(*args: str) -> tuple[int, bytes, str]:
    """Run curl; its status code, body and verbose trace."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-v", "--max-time", str(CLIENT_TIMEOUT), "-o", "-",
        "-w", "\n%{http_code}", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")
    body, _, code = out.rpartition(b"\n")
    return int(code), body, err.decode(errors="replace")


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100", "no-expect"])
async def test_curl_reads_the_413_of_an_oversized_image(
    early: Service, big_image: Path, caller: Caller, expect: bool
) -> None:
    expect_header = "Expect: 100-continue" if expect else "Expect:"
    status, body, trace = await _curl(
        "-H", f"Authorization: Bearer {caller.token}", "-H", expect_header,
        "-F", f"file=@{big_image}", "-F", "entity_type=user", "-F", f"entity_id={caller.sub}",
        _url(early, f"{API}/upload/"),
    )  # fmt: skip
    assert status == 413, trace[-2000:]
    assert json.loads(body) == TOO_BIG
    assert "< Connection: close" in trace


async def test_refusal_before_the_body_sends_no_100_continue(
    early: Service, big_image: Path
) -> None:
    status, body, trace = await _curl(
        "-H", "Expect: 100-continue", "-F", f"file=@{big_image}", _url(early, f"{API}/upload/")
    )  # fmt: skip
    assert status == 401 and "error" in json.loads(body)
    assert "HTTP/1.1 100" not in trace
    status, body, trace = await _curl(
        "-H", "Expect: 100-continue", "-H", "Content-Type: application/json",
        "--data-binary", "@" + str(big_image), _url(early, f"{API}/presigned_upload/"),
    )  # fmt: skip
    assert status == 413 and json.loads(body) == {
        "error": f"Request body exceeds the maximum of {MB} bytes"
    }
    assert "HTTP/1.1 100" not in trace


def _form(caller: Caller) -> dict[str, str]:
    return {"entity_type": "user", "entity_id": caller.sub}


async def test_httpx_reads_the_413_and_goes_on(
    early: Service, big_image: Path, caller: Caller
) -> None:
    headers = {"Authorization": f"Bearer {caller.token}"}
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        for _ in range(3):
            with big_image.open("rb") as file:
                response = await http.post(
                    _url(early, f"{API}/upload/"),
                    headers=headers,
                    files={"file": ("big.jpg", file, "image/jpeg")},
                    data=_form(caller),
                )
            assert response.status_code == 413 and response.json() == TOO_BIG
            assert response.headers["Connection"] == "close"
            assert (await http.get(_url(early, "/healthz"))).status_code == 200


def _requests_session_upload(url: str, big_image: Path, caller: Caller) -> list[int]:
    statuses = []
    with requests.Session() as session:
        for _ in range(3):
            with big_image.open("rb") as file:
                response = session.post(
                    f"{url}{API}/upload/",
                    headers={"Authorization": f"Bearer {caller.token}"},
                    files={"file": ("big.jpg", file, "image/jpeg")},
                    data=_form(caller),
                    timeout=CLIENT_TIMEOUT,
                )
            assert response.json() == TOO_BIG
            statuses.append(response.status_code)
            statuses.append(session.get(f"{url}/healthz", timeout=CLIENT_TIMEOUT).status_code)
    return statuses


async def test_requests_reads_the_413_and_goes_on(
    early: Service, big_image: Path, caller: Caller
) -> None:
    url = _url(early, "")
    statuses = await asyncio.to_thread(_requests_session_upload, url, big_image, caller)
    assert statuses == [413, 200] * 3


async def test_aiohttp_reads_the_413_and_goes_on(
    early: Service, big_image: Path, caller: Caller
) -> None:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for _ in range(3):
            form = aiohttp.FormData(_form(caller))
            with big_image.open("rb") as file:
                form.add_field("file", file, filename="big.jpg", content_type="image/jpeg")
                async with http.post(
                    _url(early, f"{API}/upload/"),
                    data=form,
                    headers={"Authorization": f"Bearer {caller.token}"},
                ) as response:
                    assert response.status == 413
                    assert await response.json() == TOO_BIG
            async with http.get(_url(early, "/healthz")) as health:
                assert health.status == 200


NODE_UPLOAD = """
import { readFileSync } from 'node:fs';
const { URL_, TOKEN, ENTITY_ID, FILE_PATH } = process.env;
const results = [];
for (let i = 0; i < 3; i++) {
  const form = new FormData();
  form.append('file', new File([readFileSync(FILE_PATH)], 'big.jpg', { type: 'image/jpeg' }));
  form.append('entity_type', 'user');
  form.append('entity_id', ENTITY_ID);
  const response = await fetch(`${URL_}/api/v1/drf/media/upload/`, {
    method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` }, body: form,
  });
  results.push({ status: response.status, body: await response.json() });
  results.push({ status: (await fetch(`${URL_}/healthz`)).status });
}
console.log(JSON.stringify(results));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
async def test_node_fetch_reads_the_413(
    early: Service, big_image: Path, caller: Caller, tmp_path: Path
) -> None:
    script = tmp_path / "upload.mjs"
    script.write_text(NODE_UPLOAD)
    env = {
        "URL_": _url(early, ""),
        "TOKEN": caller.token,
        "ENTITY_ID": caller.sub,
        "FILE_PATH": str(big_image),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    process = await asyncio.create_subprocess_exec(
        "node", str(script), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    assert process.returncode == 0, err.decode(errors="replace")
    assert json.loads(out) == [{"status": 413, "body": TOO_BIG}, {"status": 200}] * 3


async def test_keep_alive_survives_a_refusal_without_a_body(early: Service) -> None:
    """A GET refused before its (empty) body: Tornado alone would close the connection."""
    reader, writer = await send_head(
        early.port,
        f"GET {API}/upload/ HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    try:
        refused = await read_answer(reader)
        assert refused.status == 405 and "connection" not in refused.headers
        health = await read_answer(reader)
        assert health.status == 200 and health.json == {"status": "ok"}
    finally:
        writer.close()


async def test_an_unread_body_is_drained_then_the_connection_closes(
    early: Service, caller: Caller
) -> None:
    """The 401 comes before the body; the client may still send it all, then sees EOF."""
    reader, writer = await send_head(
        early.port,
        f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nContent-Length: {8 * MB}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n",
    )
    try:
        refused = await read_answer(reader)
        assert refused.status == 401 and refused.headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT) == b""  # our FIN
        for _ in range(8):  # no reset: every byte is taken
            writer.write(b"x" * MB)
            await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT)
        # The whole body is read: the server closes at once (bytes past it are refused).
        seconds, _sent = await _send_until_reset(writer, b"past the body", 0.05, limit=10)
        assert seconds < 8
    finally:
        writer.close()


async def test_a_huge_header_block_is_431_json(early: Service) -> None:
    token = "x" * (75 * 1024)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        response = await http.get(
            _url(early, f"{API}/"), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 431
        assert response.json() == {
            "error": "Request header block exceeds the maximum of 65536 bytes"
        }
        assert response.headers["Connection"] == "close"
        assert (await http.get(_url(early, "/healthz"))).status_code == 200


async def test_invented_methods_share_one_metric_label(early: Service) -> None:
    client = Client(_url(early, ""))
    for method in ("XQWERTY", "XQWERTZ", "BREW"):
        reader, writer = await send_head(
            early.port, f"{method} /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        try:
            assert (await read_answer(reader)).status == 405
        finally:
            writer.close()
    text = (await client.request("GET", "/metrics")).body.decode()
    assert "XQWERTY" not in text and "BREW" not in text
    assert 'method="other",route="HealthHandler",status="405"' in text


@pytest.fixture(scope="module")
async def tight(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """A service that drains little: 2 MB, 3 s in all, 1 s of silence."""
    settings = service_settings(
        tmp_path_factory.mktemp("tight"),
        processing_enabled=False,
        sweep_interval=0,
        log_level="critical",
        linger_max_bytes=2 * MB,
        linger_timeout=3,
        linger_idle_timeout=1,
        max_header_size=8192,
    )
    service = await start_service(settings)
    yield service
    await service.stop()


def _refused_head(length_header: str) -> str:
    return (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\n{length_header}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )


async def _send_until_reset(
    writer: asyncio.StreamWriter, piece: bytes, pause: float, limit: float = CLIENT_TIMEOUT
) -> tuple[float, int]:
    """Send `piece` every `pause` seconds until the server has closed the connection (our
    writes then get a reset); the seconds that took and the bytes sent. The answer's FIN
    says nothing here: the server shuts only its sending side while it drains."""
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0
    while loop.time() - started < limit:
        try:
            writer.write(piece)
            await asyncio.wait_for(writer.drain(), limit)
        except (ConnectionError, TimeoutError):
            break
        sent += len(piece)
        await asyncio.sleep(pause)
    return loop.time() - started, sent


async def test_a_chunked_body_is_drained_after_the_answer(tight: Service) -> None:
    reader, writer = await send_head(tight.port, _refused_head("Transfer-Encoding: chunked"))
    try:
        refused = await read_answer(reader)
        assert refused.status == 401 and refused.headers["connection"] == "close"
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"y" * 64 * 1024)
        writer.write(chunk * 16 + b"0\r\n\r\n")  # 1 MB, within the drain's byte cap
        await asyncio.wait_for(writer.drain(), CLIENT_TIMEOUT)
        assert await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT) == b""
    finally:
        writer.close()


async def test_draining_stops_at_its_byte_cap(tight: Service) -> None:
    reader, writer = await send_head(tight.port, _refused_head(f"Content-Length: {64 * MB}"))
    try:
        assert (await read_answer(reader)).status == 401
        _seconds, sent = await _send_until_reset(writer, b"z" * (256 * 1024), 0)
        assert sent < 32 * MB  # 2 MB drained, plus what the socket buffers held
    finally:
        writer.close()


async def test_draining_stops_at_its_time_limits(tight: Service) -> None:
    # A trickle that never goes silent for 1 s is cut off at linger_timeout (3 s)...
    reader, writer = await send_head(tight.port, _refused_head(f"Content-Length: {MB}"))
    try:
        assert (await read_answer(reader)).status == 401
        seconds, _sent = await _send_until_reset(writer, b"t", 0.1)
        assert 2 < seconds < 20
    finally:
        writer.close()
    # ... and a client that goes silent, after 1 s of silence.
    reader, writer = await send_head(tight.port, _refused_head(f"Content-Length: {MB}"))
    try:
        assert (await read_answer(reader)).status == 401
        await asyncio.sleep(2)
        seconds, _sent = await _send_until_reset(writer, b"s", 0.1, limit=2.5)
        assert seconds < 2  # already closed: the first writes are refused
    finally:
        writer.close()


async def test_header_blocks_far_over_the_limit_are_cut_off(tight: Service) -> None:
    reader, writer = await send_head(
        tight.port, f"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {'b' * 40_000}\r\n\r\n"
    )
    try:  # over 4 x max_header_size: closed without an answer, never hanging
        assert await asyncio.wait_for(reader.read(), CLIENT_TIMEOUT) == b""
    finally:
        writer.close()
    reader, writer = await send_head(
        tight.port, f"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {'b' * 20_000}\r\n\r\n"
    )
    try:
        answer = await read_answer(reader)
        assert answer.status == 431 and answer.json == {
            "error": "Request header block exceeds the maximum of 8192 bytes"
        }
    finally:
        writer.close()


async def test_a_refused_presigned_put_is_readable(early: Service) -> None:
    """The local PUT endpoint refuses a bad signature before the body: 403, then the drain."""
    url = _url(early, "/uploads/media/user/x/y.jpg?content_type=image/jpeg&size=5&expires=1&sig=0")
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        response = await http.put(
            url, content=b"\0" * (5 * MB), headers={"Content-Type": "image/jpeg"}
        )
        assert response.status_code == 403
        assert response.json() == {"error": "Invalid or expired upload URL"}
        assert response.headers["Connection"] == "close"
        assert (await http.get(_url(early, "/healthz"))).status_code == 200
