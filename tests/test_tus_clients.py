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
from typing import IO, Any

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


def write_text_file(path: Path, size: int) -> str:
    """A plain-text file of `size` bytes written a MiB at a time; its sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for block in range(-(-size // MB)):
            piece = text(min(MB, size - block * MB), seed=f"block {block:06d}")
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


class TuspyRun:
    """tuspy in a thread, uploading a file in 40 MB PATCHes and retrying through a restart."""

    def __init__(self, url: str, token: str, path: Path, fields: dict[str, str]) -> None:
        self.created: str | None = None
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url, token, path, fields))
        self._thread.start()

    def _run(self, url: str, token: str, path: Path, fields: dict[str, str]) -> None:
        try:
            with open(path, "rb") as file:  # tuspy leaves a file it opened itself open
                self._upload(url, token, file, fields)
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    def _upload(self, url: str, token: str, file: IO[bytes], fields: dict[str, str]) -> None:
        client = TusClient(url, headers={"Authorization": f"Bearer {token}"})
        uploader = client.uploader(
            file_stream=file, chunk_size=40 * MB, retries=120, retry_delay=0.25, metadata=fields
        )
        self.created = uploader.create_url()
        uploader.set_url(self.created)
        uploader.offset = 0
        uploader.upload()

    def finish(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "tuspy did not finish"
        assert self.failure is None, self.failure


class NodeRun:
    """tus-js-client in Node, uploading a file in 40 MB PATCHes; it prints the upload URL as
    soon as it has one and retries for half a minute, long enough for a restart."""

    def __init__(self, base: str, token: str, path: Path, fields: dict[str, str]) -> None:
        self.created: str | None = None
        env = {
            **os.environ, "BASE_URL": base, "TOKEN": token, "FILE_PATH": str(path),
            "METADATA": json.dumps(fields), "CHUNK_SIZE": str(40 * MB),
            "RETRY_DELAYS": json.dumps([250] * 120),
        }  # fmt: skip
        self._process = subprocess.Popen(
            ["node", str(JS / "tus_upload.mjs")], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.append(json.loads(line))
            self.created = self.created or self._lines[-1].get("created")

    def finish(self, timeout: float) -> None:
        with self._process:  # closes the pipes
            try:
                self._process.wait(timeout)
            finally:
                self._process.kill()
                self._reader.join(5)
            assert self._process.stderr is not None
            errors = self._process.stderr.read()
        assert self._process.returncode == 0, errors
        assert self._lines and "error" not in self._lines[-1], self._lines


@pytest.mark.parametrize("client", ["tuspy", "tus-js-client"])
def test_a_server_killed_mid_upload_is_resumed_without_losing_a_byte(
    client: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL `mediasvc serve` while a PATCH of a 200 MB upload streams; start it again on
    the same data and port; the client retries, asks for the offset and goes on; the stored
    file is the source, byte for byte."""
    if client == "tus-js-client":
        request.getfixturevalue("node_modules")
    source = tmp_path / "big.txt"
    sha256 = write_text_file(source, 200 * MB)
    data = tmp_path / "var"
    # a commit every 16 MB, so that part of a 40 MB PATCH is committed when the server dies
    limits = {"max_document_size": str(256 * MB), "tus_checkpoint_interval": "0"}
    server = Server(data, **limits)
    port, sub = server.port, str(uuid.uuid4())
    token = server.token(sub)
    fields = {"filename": "big.txt", "entity_type": "user", "entity_id": sub}
    run: TuspyRun | NodeRun = (
        TuspyRun(server.url(TUS), token, source, fields)
        if client == "tuspy"
        else NodeRun(server.url(""), token, source, fields)
    )
    later = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # some of a 40 MB PATCH is committed, not all
            url = run.created
            if url and (_offset(server, token, url) or 0) >= 56 * MB:
                break
            time.sleep(0.02)
        server.kill()  # SIGKILL while a PATCH still streams
        assert run.created is not None
        later = Server(data, port=port, **limits)
        after_restart = _offset(later, token, run.created)
        assert after_restart is not None and after_restart >= 56 * MB  # what was committed
        run.finish(timeout=180)
        media_id = run.created.rsplit("/", 1)[-1]
        media = later.settled(token, media_id, timeout=120)
        assert media["status"] == "ready" and media["file_size"] == 200 * MB
        (stored,) = (data / "media").rglob(f"{media_id}.txt")  # the original in the store
        assert file_sha256(stored) == sha256 == media["sha256"]
    finally:
        server.kill()
        if later is not None:
            later.stop()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while piece := file.read(MB):
            digest.update(piece)
    return digest.hexdigest()
