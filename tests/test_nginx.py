"""nginx (Debian's) in front of the service with the operations guide's configuration:
an over-limit image gets the service's 413 JSON every time, never nginx's 502, the next
request on the kept-alive client connection works, and tus PATCH bodies stream through (a
PATCH cut off mid-body keeps what arrived)."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import requests

from mediasvc.app import Service, start_service
from tests.support.client import API, Client
from tests.support.early import oversized_image
from tests.support.samples import text_of
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token
from tests.support.tus import create, head, patch, path_of, tus_headers
from tests.support.upload_cli import cli_env, mediasvc_upload

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TRIES = 20
CLIENT_TIMEOUT = 60
MB = 1024 * 1024
TOO_BIG = {"error": "File size exceeds maximum allowed size of 10.0MB for image files"}

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="nginx is not installed (scripts/system-deps.sh)"
)

# The server block docs/operations.md recommends, with the upstream's port filled in.
SITE = """
upstream mediasvc {
    server 127.0.0.1:%(upstream)d;
    keepalive 16;
}
server {
    listen 127.0.0.1:%(port)d;
    client_max_body_size 1100m;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_read_timeout 660s;
    location / {
        proxy_pass http://mediasvc;
    }
    location ~ ^(/api/v1/drf/media/((batch_)?upload/?|tus/)|/uploads/) {
        proxy_pass http://mediasvc;
        proxy_request_buffering off;
        # nginx closes the connection after an answer that came before the whole body was
        # passed on, even where it said keep-alive; a client that sent its next request
        # meanwhile loses it. With this it says Connection: close.
        keepalive_timeout 0;
    }
}
"""

MAIN = """
daemon off;
master_process off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    %(site)s
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def upstream(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    settings = service_settings(
        tmp_path_factory.mktemp("behind-nginx"),
        processing_enabled=False,
        sweep_interval=0,
        log_level="critical",
        xheaders=True,
    )
    service = await start_service(settings)
    yield service
    await service.stop()


@pytest.fixture(scope="module")
def nginx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nginx")


@pytest.fixture(scope="module")
def nginx(upstream: Service, nginx_dir: Path) -> Iterator[str]:
    """nginx on a free loopback port, proxying to the service; its base URL."""
    folder = nginx_dir
    port = _free_port()
    site = SITE % {"upstream": upstream.port, "port": port}
    (folder / "nginx.conf").write_text(MAIN % {"dir": folder, "site": site})
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (folder / "error.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tries(base: str, image: Path, caller: Caller) -> list[tuple[object, object, object]]:
    """Upload the image TRIES times on one session; each time also GET /healthz after it.
    A transport error is recorded in place of the answer, so a failure shows all of them."""
    seen: list[tuple[object, object, object]] = []
    with requests.Session() as session:
        for _ in range(TRIES):
            try:
                seen.append(_one_try(session, base, image, caller))
            except requests.RequestException as exc:
                seen.append(("error", repr(exc), None))
    return seen


def _one_try(
    session: requests.Session, base: str, image: Path, caller: Caller
) -> tuple[object, object, object]:
    with image.open("rb") as file:
        response = session.post(
            f"{base}{API}/upload/",
            headers={"Authorization": f"Bearer {caller.token}"},
            files={"file": ("big.jpg", file, "image/jpeg")},
            data={"entity_type": "user", "entity_id": caller.sub},
            timeout=CLIENT_TIMEOUT,
        )
    try:
        body: object = response.json()
    except ValueError:
        body = response.text[:200]
    health = session.get(f"{base}/healthz", timeout=CLIENT_TIMEOUT)
    return response.status_code, body, health.status_code


async def test_the_413_json_comes_through_nginx_every_time(
    nginx: str, nginx_dir: Path, tmp_path: Path, samples: dict[str, bytes]
) -> None:
    image = oversized_image(tmp_path, samples["jpg"])
    sub = str(uuid.uuid4())
    seen = await asyncio.to_thread(_tries, nginx, image, Caller(sub, make_token(sub)))
    wrong = [answer for answer in seen if answer != (413, TOO_BIG, 200)]
    assert not wrong, (wrong, (nginx_dir / "error.log").read_text()[-3000:])


def _two_gets(base: str) -> tuple[int, int, bool]:
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=CLIENT_TIMEOUT)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/healthz")
        second = connection.getresponse()
        second.read()
        return first.status, second.status, connection.sock is sock and sock is not None
    finally:
        connection.close()


async def test_other_requests_keep_the_connection_alive(nginx: str) -> None:
    assert await asyncio.to_thread(_two_gets, nginx) == (200, 200, True)


async def test_uploads_stream_through_nginx(nginx: str, samples: dict[str, bytes]) -> None:
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))

    def upload() -> requests.Response:
        return requests.post(
            f"{nginx}{API}/upload/",
            headers={"Authorization": f"Bearer {caller.token}"},
            files={"file": ("a.jpg", samples["jpg"], "image/jpeg")},
            data={"entity_type": "user", "entity_id": caller.sub},
            timeout=CLIENT_TIMEOUT,
        )

    response = await asyncio.to_thread(upload)
    assert response.status_code == 201, response.text
    assert response.json()["file_size"] == len(samples["jpg"])
    assert response.json()["url"].startswith(nginx)  # links name the proxy's address


async def test_a_tus_patch_cut_off_behind_nginx_keeps_what_arrived(nginx: str) -> None:
    """tus PATCH bodies stream through too: a PATCH cut off mid-body still leaves the bytes
    that arrived on the service (nginx buffering it would pass on nothing), and the upload
    resumes from there through the proxy."""
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))
    client = Client(nginx)
    line = b"resumable uploads keep every byte they acknowledged behind a proxy\n"
    content = (line * (8 * MB // len(line) + 1))[: 8 * MB]
    created = await create(client, caller, "notes.txt", len(content))
    assert created.status == 201, created.body
    assert created.headers["Location"].startswith(nginx)  # the proxy's address
    path = path_of(created.headers["Location"])
    sent = 5 * MB
    await _patch_cut_off(nginx, caller.token, path, content, sent)
    deadline = time.monotonic() + 20
    while (offset := int((await head(client, caller.token, path)).headers["Upload-Offset"])) == 0:
        assert time.monotonic() < deadline, "nothing of the cut-off PATCH reached the service"
        await asyncio.sleep(0.1)
    assert 0 < offset <= sent
    rest = await patch(client, caller.token, path, offset, content[offset:])
    assert rest.status == 204 and rest.headers["Upload-Offset"] == str(len(content))
    media_id = path.rstrip("/").rsplit("/", 1)[-1]
    media = (await client.request("GET", f"{API}/{media_id}/", token=caller.token)).json
    assert media["file_size"] == len(content)
    assert (await client.request("GET", media["url"])).body == content


async def _patch_cut_off(base: str, token: str, path: str, content: bytes, sent: int) -> None:
    """A PATCH of all of `content` whose client goes away after `sent` bytes of it."""
    host, port = base.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    headers = tus_headers(
        Upload_Offset="0",
        Content_Type="application/offset+octet-stream",
        Content_Length=str(len(content)),
        Authorization=f"Bearer {token}",
        Host=f"{host}:{port}",
    )
    head_block = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"PATCH {path} HTTP/1.1\r\n{head_block}\r\n".encode() + content[:sent])
    await writer.drain()
    await asyncio.sleep(1)  # the service has written what nginx passed on
    writer.transport.abort()


async def test_the_upload_command_goes_through_nginx(nginx: str, tmp_path: Path) -> None:
    """`mediasvc upload` of a folder through the proxy: tus creation and 1 MB PATCHes, each
    on a new connection there (`keepalive_timeout 0`), and the wait for every media."""
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))
    folder = tmp_path / "notes"
    folder.mkdir()
    files = {f"part-{n}.txt": text_of(n * MB + 12_345, seed=f"part {n}") for n in (1, 3, 6)}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    done = await mediasvc_upload(
        "notes", "--entity", f"user:{sub}", "--server", nginx, "--wait", "--json",
        "--concurrency", "2", "--chunk-size", "1MB", "--checksum", "sha256",
        "--state", str(tmp_path / "state.db"), env=cli_env(caller.token, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.err
    lines = done.by_path()
    assert set(lines) == {f"notes/{name}" for name in files}
    client = Client(nginx)
    for name, content in files.items():
        line = lines[f"notes/{name}"]
        assert line["status"] == "ready" and line["size"] == len(content), line
        media = (await client.request("GET", f"{API}/{line['media_id']}/", token=caller.token)).json
        assert media["sha256"] == hashlib.sha256(content).hexdigest()
