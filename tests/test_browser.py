"""The spec's JavaScript examples in Chromium, from a page on another origin.

A second loopback server serves the page; Chromium (Debian's, driven by Playwright) maps the
page hosts app.test (listed in `cors_origins`) and other.test (not listed) to loopback. The
page's `<base href>` is the service, so the examples' relative `fetch` URLs reach it
cross-origin exactly as written; the example text is the one the Node tests run
(tests/js/*.mjs, between its markers), not a second copy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from mediasvc.app import Service, start_service
from mediasvc.upload import size_error
from tests.support.browser import chromium
from tests.support.client import API, Client
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server
from tests.support.service import service_settings
from tests.support.tokens import make_token

HOSTS = "--host-resolver-rules=MAP app.test 127.0.0.1, MAP other.test 127.0.0.1"
IMAGE_LIMIT = 512 * 1024
JS = Path(__file__).parent / "js"
REQUEST_LOG = "mediasvc.request"
DOCS = Path(__file__).parent.parent / "docs" / "operations.md"


def spec_example(script: str) -> str:
    """The spec's example as embedded in a Node script, between its markers."""
    text = (JS / script).read_text()
    start = text.index("\n", text.index("// ---- from spec/media-api.md")) + 1
    return text[start : text.index("// ---- end of the example")]


def page_html(api_base: str) -> str:
    """A page whose base URL is the service; each example runs as written in a function that
    gives it what a page has (a token, a service id, a file input) and returns what it got."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><base href="{api_base}/"><title>media</title></head>
<body><input type="file" id="file">
<script>
async function directUpload(token, serviceId) {{
  const fileInput = document.getElementById('file');
{spec_example("direct_upload.mjs")}
  return {{ status: response.status, media }};
}}
async function presignedUpload(token, serviceId) {{
  const file = document.getElementById('file').files[0];
{spec_example("presigned_upload.mjs")}
  return {{ status: uploadRequest.status, media_id, upload_url }};
}}
</script></body></html>"""


class PageHandler(tornado.web.RequestHandler):
    """GET /<name>: a page of the browser app (one per service it talks to)."""

    def initialize(self, pages: dict[str, str]) -> None:
        self.pages = pages

    def get(self, name: str) -> None:
        if name not in self.pages:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(self.pages[name])


@dataclass
class Origins:
    """The running service, the page server, and what a browser sees of them."""

    service: Service
    client: Client
    page_port: int
    sample_dir: Path
    pages: dict[str, str]

    @property
    def allowed(self) -> str:
        return f"http://app.test:{self.page_port}"

    @property
    def other(self) -> str:
        return f"http://other.test:{self.page_port}"


@pytest.fixture(scope="module")
async def origins(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Origins]:
    """The service with the page's origin in cors_origins, and the page server beside it."""
    page_sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    page_port = int(page_sockets[0].getsockname()[1])
    settings = service_settings(
        tmp_path_factory.mktemp("browser"),
        cors_origins=(f"http://app.test:{page_port}",),
        max_image_size=IMAGE_LIMIT,
        processing_enabled=False,
        sweep_interval=0,
        log_level="critical",
    )
    service = await start_service(settings)
    base = f"http://127.0.0.1:{service.port}"
    pages = {"": page_html(base)}
    page_app = tornado.web.Application([(r"/(.*)", PageHandler, {"pages": pages})])
    page_server = tornado.httpserver.HTTPServer(page_app)
    page_server.add_sockets(page_sockets)
    files = tmp_path_factory.mktemp("browser-files")
    try:
        yield Origins(service, Client(base), page_port, files, pages)
    finally:
        page_server.stop()
        await page_server.close_all_connections()
        await service.stop()


@pytest.fixture(scope="module")
async def browser(origins: Origins) -> AsyncIterator[Any]:
    """One Chromium for the module (Debian's, not a downloaded build)."""
    async with chromium(HOSTS) as browser:
        yield browser


def documented_bucket_rule(origin: str) -> dict[str, Any]:
    """The bucket CORS rule docs/operations.md shows, for `origin`."""
    text = DOCS.read_text()
    section = text[text.index("## Browser apps (CORS)") :]
    block = section[
        section.index("```json\n") + 8 : section.index("```", section.index("```json") + 7)
    ]
    rule: dict[str, Any] = json.loads(block.replace("https://app.example.com", origin))
    return rule


@pytest.fixture(scope="module")
async def s3_page(
    origins: Origins, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    """A service on S3 (SeaweedFS) whose bucket has the documented CORS rule; its page is
    /s3 on the page server."""
    bucket = f"mediasvc-browser-{uuid.uuid4().hex[:12]}"
    settings = service_settings(
        tmp_path_factory.mktemp("browser-s3"),
        storage="s3", s3_endpoint_url=s3_server.endpoint, s3_bucket=bucket,
        s3_access_key=S3_ACCESS_KEY, s3_secret_key=S3_SECRET_KEY, s3_addressing_style="path",
        s3_create_bucket=True, cors_origins=(origins.allowed,), processing_enabled=False,
        sweep_interval=0, log_level="critical",
    )  # fmt: skip
    service = await start_service(settings)
    s3 = boto3.client(
        "s3", endpoint_url=s3_server.endpoint, aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY, region_name=settings.s3_region,
    )  # fmt: skip
    rule = documented_bucket_rule(origins.allowed)
    await asyncio.to_thread(s3.put_bucket_cors, Bucket=bucket, CORSConfiguration=rule)
    base = f"http://127.0.0.1:{service.port}"
    origins.pages["s3"] = page_html(base)
    try:
        yield Client(base)
    finally:
        await service.stop()


@dataclass
class Traffic:
    """What the page got (method, path, status) and which requests failed in the browser, and
    what the service answered, from its request log (preflights never show up as page
    responses)."""

    responses: list[tuple[str, str, int]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    log: pytest.LogCaptureFixture | None = None

    @property
    def served(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the service answered meanwhile."""
        assert self.log is not None
        lines = [r.getMessage() for r in self.log.records if r.name == REQUEST_LOG]
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [(r["method"], r["path"], r["status"]) for r in records]


@pytest.fixture
async def page(
    browser: Any, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[Any, Traffic]]:
    caplog.set_level(logging.INFO, logger=REQUEST_LOG)
    context = await browser.new_context()
    tab = await context.new_page()
    traffic = Traffic(log=caplog)

    def on_response(response: Any) -> None:
        path = urlsplit(response.url).path
        traffic.responses.append((response.request.method, path, response.status))

    tab.on("response", on_response)
    tab.on(
        "requestfailed", lambda request: traffic.failed.append(f"{request.url} {request.failure}")
    )
    yield tab, traffic
    await context.close()


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def big_photo(origins: Origins) -> Path:
    """A real JPEG of a few MB (noise does not compress), well over the image limit."""
    path = origins.sample_dir / "big photo.jpg"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=2400x1600,noise=alls=80:allf=t", "-frames:v", "1",
        "-q:v", "2", str(path),
    )  # fmt: skip
    assert path.stat().st_size > 4 * IMAGE_LIMIT
    return path


async def _open(tab: Any, origin: str, file: Path, page: str = "") -> None:
    await tab.goto(f"{origin}/{page}")
    await tab.set_input_files("#file", str(file))


def _service_caller() -> tuple[str, str]:
    service_id = str(uuid.uuid4())
    return service_id, make_token(str(uuid.uuid4()), entities=[f"service:{service_id}"])


async def test_direct_upload_example_from_another_origin(
    origins: Origins, page: tuple[Any, Traffic], samples: dict[str, bytes]
) -> None:
    tab, traffic = page
    photo = origins.sample_dir / "gallery photo.jpg"
    photo.write_bytes(samples["jpg"])
    service_id, token = _service_caller()
    await _open(tab, origins.allowed, photo)
    result = await tab.evaluate("([t, s]) => directUpload(t, s)", [token, service_id])
    assert result["status"] == 201, result
    media = result["media"]
    assert media["filename"] == "gallery photo.jpg"
    assert media["title"] == "Service Gallery Image"
    assert media["entity_type"] == "service" and media["entity_id"] == service_id
    stored = await origins.client.request("GET", f"{API}/{media['id']}/", token=token)
    assert stored.status == 200 and stored.json["file_size"] == len(samples["jpg"])
    assert ("OPTIONS", f"{API}/upload/", 204) in traffic.served  # the preflight
    assert traffic.failed == []


async def test_presigned_upload_example_from_another_origin(
    origins: Origins, page: tuple[Any, Traffic], samples: dict[str, bytes]
) -> None:
    tab, traffic = page
    video = origins.sample_dir / "large video.mp4"
    video.write_bytes(samples["mp4"])
    service_id, token = _service_caller()
    await _open(tab, origins.allowed, video)
    result = await tab.evaluate("([t, s]) => presignedUpload(t, s)", [token, service_id])
    assert result["status"] == 201, result
    media_id = result["media_id"]
    assert result["upload_url"].startswith(f"http://127.0.0.1:{origins.service.port}/uploads/")
    statuses = {(method, path): status for method, path, status in traffic.served}
    assert statuses[("OPTIONS", f"{API}/presigned_upload/")] == 204
    put_path = next(path for method, path in statuses if method == "PUT")
    assert statuses[("OPTIONS", put_path)] == 204 and statuses[("PUT", put_path)] == 200
    assert statuses[("POST", f"{API}/{media_id}/confirm_upload/")] == 200
    assert traffic.failed == []
    media = await origins.client.request("GET", f"{API}/{media_id}/", token=token)
    assert media.json["status"] in ("processing", "ready")
    assert media.json["file_size"] == len(samples["mp4"])
    stored = await origins.client.request("GET", media.json["url"])
    assert stored.body == samples["mp4"]


async def test_presigned_upload_example_to_s3_with_the_documented_bucket_rule(
    origins: Origins, s3_page: Client, page: tuple[Any, Traffic], samples: dict[str, bytes]
) -> None:
    """With S3 the browser PUTs straight to the bucket: the rule in the guide is enough."""
    tab, traffic = page
    photo = origins.sample_dir / "bucket photo.png"
    photo.write_bytes(samples["png"])
    service_id, token = _service_caller()
    await _open(tab, origins.allowed, photo, page="s3")
    result = await tab.evaluate("([t, s]) => presignedUpload(t, s)", [token, service_id])
    assert result["status"] == 201, result
    upload = urlsplit(result["upload_url"])
    assert upload.port not in (origins.service.port, urlsplit(s3_page.base).port)
    assert ("PUT", upload.path, 200) in traffic.responses
    # A refused PUT would have made the example's fetch throw. Chromium reports the empty
    # body of S3's answer, which the example never reads, as aborted; nothing else failed.
    assert all(failure.endswith("net::ERR_ABORTED") for failure in traffic.failed)
    media = await s3_page.request("GET", f"{API}/{result['media_id']}/", token=token)
    assert media.json["status"] in ("processing", "ready")
    assert (await s3_page.request("GET", media.json["url"])).body == samples["png"]


async def test_over_limit_image_413_is_read_by_the_page(
    origins: Origins, page: tuple[Any, Traffic], big_photo: Path
) -> None:
    """The service cuts the upload off while it streams; the page reads the 413 JSON."""
    tab, _ = page
    service_id, token = _service_caller()
    await _open(tab, origins.allowed, big_photo)
    result = await tab.evaluate("([t, s]) => directUpload(t, s)", [token, service_id])
    assert result["status"] == 413, result
    assert result["media"] == {"error": size_error("image", IMAGE_LIMIT).message}


async def test_origin_not_listed_is_blocked_by_the_browser(
    origins: Origins, page: tuple[Any, Traffic], samples: dict[str, bytes]
) -> None:
    tab, traffic = page
    photo = origins.sample_dir / "blocked.jpg"
    photo.write_bytes(samples["jpg"])
    service_id, token = _service_caller()
    await _open(tab, origins.other, photo)
    outcome = await tab.evaluate(
        "([t, s]) => directUpload(t, s).then(r => 'answered ' + JSON.stringify(r),"
        " e => e.name + ': ' + e.message)",
        [token, service_id],
    )
    assert outcome == "TypeError: Failed to fetch"
    assert traffic.served == [("OPTIONS", f"{API}/upload/", 403)]
    listed = await origins.client.request(
        "GET", f"{API}/?entity_type=service&entity_id={service_id}", token=token
    )
    assert listed.json["count"] == 0
    assert traffic.failed  # the browser refused to send the POST
