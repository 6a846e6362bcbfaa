"""Real tus clients against the service: tuspy (Python) and tus-js-client (Node), chunked,
checksummed, in parallel pieces, and across a server killed in the middle of an upload."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from tusclient.client import TusClient

from tests.support.client import API
from tests.support.media import settled
from tests.support.process import Server
from tests.support.service import Backend
from tests.support.tokens import Caller

JS = Path(__file__).parent / "js"
TUS = f"{API}/tus/"
MB = 1024 * 1024


def text(size: int, seed: str = "") -> bytes:
    """A plain-text file of `size` bytes whose lines differ (so misplaced bytes show)."""
    lines = (f"{seed} line {n:09d} of a resumable upload\n".encode() for n in range(size))
    out = bytearray()
    for line in lines:
        out += line
        if len(out) >= size:
            break
    return bytes(out[:size])


def tuspy_upload(
    base: str, token: str, content: bytes, fields: dict[str, str], **options: Any
) -> str:
    """Upload with tuspy's own uploader (blocking: run it in a thread); the upload URL."""
    client = TusClient(f"{base}{TUS}", headers={"Authorization": f"Bearer {token}"})
    uploader = client.uploader(file_stream=io.BytesIO(content), metadata=fields, **options)
    uploader.upload()
    return str(uploader.url)


async def test_tuspy_uploads_in_checksummed_chunks(
    backend: Backend, user: Caller, samples: dict[str, bytes]
) -> None:
    content = text(700_000)
    fields = {"filename": "notes.txt", **user.entity, "title": "From tuspy"}
    url = await asyncio.to_thread(
        tuspy_upload, backend.client.base, user.token, content, fields,
        chunk_size=64 * 1024, upload_checksum=True,
    )  # fmt: skip
    media = await settled(backend.client, user.token, url.rsplit("/", 1)[-1])
    assert media["status"] == "ready" and media["title"] == "From tuspy"
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    assert (await backend.client.request("GET", media["url"])).body == content
    image_url = await asyncio.to_thread(
        tuspy_upload, backend.client.base, user.token, samples["png"],
        {"filename": "shot.png", **user.entity}, chunk_size=100,
    )  # fmt: skip
    image = await settled(backend.client, user.token, image_url.rsplit("/", 1)[-1])
    assert image["status"] == "ready" and image["thumbnail_url"]


# ---- tus-js-client in Node


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """tus-js-client as the lockfile pins it (`make setup` installs it; else it is done here)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js is not installed")
    installed = JS / "node_modules" / "tus-js-client"
    if not installed.is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(JS), "--no-audit", "--no-fund", "--silent"],
            check=True, timeout=300,
        )  # fmt: skip
    return installed


async def _node_upload(
    base: str, token: str, path: Path, fields: dict[str, str], chunk: int, parallel: int = 1
) -> dict[str, Any]:
    env = {
        **os.environ, "BASE_URL": base, "TOKEN": token, "FILE_PATH": str(path),
        "METADATA": json.dumps(fields), "CHUNK_SIZE": str(chunk), "PARALLEL": str(parallel),
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        "node", str(JS / "tus_upload.mjs"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in result, result
    return result


async def test_tus_js_client_uploads_in_small_chunks(
    node_modules: Path, backend: Backend, user: Caller, samples: dict[str, bytes], tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(samples["mp4"])
    fields = {"filename": "clip.mp4", **user.entity, "alt_text": "A test clip"}
    result = await _node_upload(backend.client.base, user.token, clip, fields, chunk=4096)
    assert result["chunks"] == -(-len(samples["mp4"]) // 4096)
    media = await settled(backend.client, user.token, result["url"].rsplit("/", 1)[-1])
    assert media["status"] == "ready" and media["alt_text"] == "A test clip"
    assert media["sha256"] == hashlib.sha256(samples["mp4"]).hexdigest()


async def test_tus_js_client_parallel_uploads_join_through_concatenation(
    node_modules: Path, backend: Backend, user: Caller, tmp_path: Path
) -> None:
    content = text(3 * MB + 1001, seed="parallel")
    source = tmp_path / "report.txt"
    source.write_bytes(content)
    fields = {"filename": "report.txt", **user.entity}
    result = await _node_upload(
        backend.client.base, user.token, source, fields, chunk=256 * 1024, parallel=4
    )
    media = await settled(backend.client, user.token, result["url"].rsplit("/", 1)[-1])
    assert media["status"] == "ready" and media["file_size"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    assert (await backend.client.request("GET", media["url"])).body == content


# ---- a server killed in the middle of an upload


def _offset(server: Server, token: str, url: str) -> int | None:
    request = urllib.request.Request(url, method="HEAD")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Tus-Resumable", "1.0.0")
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return int(answer.headers["Upload-Offset"])
    except OSError:
        return None


def test_a_server_killed_mid_upload_is_resumed_without_losing_a_byte(tmp_path: Path) -> None:
    """SIGKILL `mediasvc serve` while a PATCH streams; start it again on the same data and
    port; tuspy retries, asks for the offset and goes on; the stored file is the source."""
    content = text(64 * MB, seed="durable")
    data = tmp_path / "var"
    limits = {"max_document_size": str(256 * MB)}
    server = Server(data, **limits)
    port, sub = server.port, str(uuid.uuid4())
    token = server.token(sub)
    created: dict[str, str] = {}
    failure: list[BaseException] = []

    def upload() -> None:
        try:
            client = TusClient(f"{server.url(TUS)}", headers={"Authorization": f"Bearer {token}"})
            uploader = client.uploader(
                file_stream=io.BytesIO(content), chunk_size=40 * MB, retries=60, retry_delay=0.25,
                metadata={"filename": "big.txt", "entity_type": "user", "entity_id": sub},
            )  # fmt: skip
            created["url"] = uploader.create_url()
            uploader.set_url(created["url"])
            uploader.offset = 0
            uploader.upload()
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)

    worker = threading.Thread(target=upload)
    worker.start()
    later = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the first 16 MiB of a 40 MB PATCH are committed
            url = created.get("url")
            if url and (_offset(server, token, url) or 0) >= 16 * MB:
                break
            time.sleep(0.02)
        server.kill()  # SIGKILL while the PATCH still streams
        later = Server(data, port=port, **limits)
        after_restart = _offset(later, token, created["url"])
        worker.join(timeout=90)
        assert not worker.is_alive() and not failure, failure
        assert after_restart is not None and after_restart >= 16 * MB  # what a 204 or a commit said
        media_id = created["url"].rsplit("/", 1)[-1]
        media = later.settled(token, media_id)
        assert media["status"] == "ready" and media["file_size"] == len(content)
        (stored,) = (data / "media").rglob(f"{media_id}.txt")  # the original in the store
        assert (
            hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()
        )
        assert media["sha256"] == hashlib.sha256(content).hexdigest()
    finally:
        worker.join(timeout=5)
        server.kill()
        if later is not None:
            later.stop()
