"""CORS: preflights on every route before auth, allow headers on every answer, nothing for
origins not listed, `*` without credentials, and no CORS header at all when it is off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mediasvc.app import Service, start_service
from mediasvc.cors import ALLOW_HEADERS
from mediasvc.settings import SettingsError, load_settings
from tests.support.client import API, Client, Response
from tests.support.media import Uploader
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token

PAGE = "http://app.example.test:8080"
OTHER = "http://evil.example.test"
SOME_ID = str(uuid.uuid4())
KEY = f"media/user/{SOME_ID}/{SOME_ID}.jpg"

# One concrete path per route with the method a browser page would send there.
ROUTES = [
    (f"{API}/", "GET"),
    (f"{API}/upload/", "POST"),
    (f"{API}/batch_upload/", "POST"),
    (f"{API}/presigned_upload/", "POST"),
    (f"{API}/{SOME_ID}/confirm_upload/", "POST"),
    (f"{API}/{SOME_ID}/", "PATCH"),
    (f"{API}/{SOME_ID}/", "DELETE"),
    (f"{API}/{SOME_ID}/download/", "GET"),
    (f"{API}/{SOME_ID}/set_primary/", "POST"),
    (f"{API}/{SOME_ID}/process/", "POST"),
    (f"{API}/bulk_delete/", "POST"),
    (f"{API}/bulk_update/", "POST"),
    (f"{API}/check/", "POST"),
    (f"{API}/openapi.json", "GET"),
    (f"{API}/tus/", "POST"),
    (f"{API}/tus/{SOME_ID}", "PATCH"),
    (f"{API}/webhooks/", "POST"),
    (f"{API}/webhooks/{SOME_ID}/", "PATCH"),
    (f"{API}/webhooks/{SOME_ID}/rotate_secret/", "POST"),
    (f"{API}/webhooks/{SOME_ID}/deliveries/", "GET"),
    (f"{API}/webhooks/{SOME_ID}/deliveries/{SOME_ID}/redeliver/", "POST"),
    (f"/uploads/{KEY}?content_type=image%2Fjpeg&size=10&expires=1&sig=x", "PUT"),
    (f"/files/{KEY}?expires=1&sig=x", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/metrics", "GET"),
    ("/", "GET"),
    ("/console", "GET"),
    ("/console/", "GET"),
    ("/console/static/0123456789ab/js/app.js", "GET"),
    ("/console/api/operations", "GET"),
]


def _cors_settings(tmp_path: Path, origins: tuple[str, ...]) -> Any:
    quiet = {"log_level": "critical", "processing_enabled": False, "sweep_interval": 0}
    return service_settings(tmp_path, cors_origins=origins, cors_max_age=1234, **quiet)


@pytest.fixture(scope="module")
async def cors_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    service = await start_service(_cors_settings(tmp_path_factory.mktemp("cors"), (PAGE,)))
    yield service
    await service.stop()


@pytest.fixture(scope="module")
def cors_client(cors_service: Service) -> Client:
    return Client(f"http://127.0.0.1:{cors_service.port}")


async def _preflight(
    client: Client, path: str, method: str, origin: str = PAGE, headers: str = ""
) -> Response:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return await client.request("OPTIONS", path, headers=asked)


def _cors_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.get_all() if k.lower().startswith("access-control")}


def _listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.parametrize(("path", "method"), ROUTES)
async def test_preflight_answers_every_route_without_auth(
    cors_client: Client, path: str, method: str
) -> None:
    asked = "authorization, content-type, idempotency-key, x-request-id, upload-offset"
    response = await _preflight(cors_client, path, method, headers=asked)
    assert response.status == 204, response.body
    assert response.body == b""
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert method in response.headers["Access-Control-Allow-Methods"].split(", ")
    assert _listed(asked) <= _listed(response.headers["Access-Control-Allow-Headers"])
    assert response.headers["Access-Control-Max-Age"] == "1234"
    assert response.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Content-Type" not in response.headers


async def test_every_registered_route_is_covered(cors_service: Service) -> None:
    """A route added later without a row in ROUTES fails here, so none goes untested."""
    app: Any = cors_service.server.request_callback
    patterns = [rule.matcher.regex for rule in app.wildcard_router.rules]
    paths = [path.split("?")[0] for path, _ in ROUTES]
    for pattern in patterns:
        assert any(pattern.fullmatch(p) for p in paths), pattern.pattern


async def test_preflight_lists_only_the_methods_of_the_route(cors_client: Client) -> None:
    detail = await _preflight(cors_client, f"{API}/{SOME_ID}/", "PATCH")
    assert set(detail.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET", "PATCH", "DELETE",
    }  # fmt: skip
    put = await _preflight(cors_client, f"/uploads/{KEY}", "PUT")
    assert put.headers["Access-Control-Allow-Methods"] == "PUT"
    files = await _preflight(cors_client, f"/files/{KEY}", "GET")
    assert files.headers["Access-Control-Allow-Methods"] == "GET, HEAD"


async def test_preflight_allows_the_tus_headers(cors_client: Client) -> None:
    response = await _preflight(cors_client, f"{API}/upload/", "POST")
    allowed = _listed(response.headers["Access-Control-Allow-Headers"])
    for name in ("Upload-Length", "Upload-Metadata", "Upload-Checksum", "Upload-Concat",
                 "Upload-Defer-Length", "Tus-Resumable", "X-HTTP-Method-Override"):  # fmt: skip
        assert name.lower() in allowed
    assert allowed == {name.lower() for name in ALLOW_HEADERS}


@pytest.mark.parametrize("path", [f"{API}/upload/", f"/uploads/{KEY}", f"/files/{KEY}"])
async def test_preflight_from_an_origin_not_listed_is_refused(
    cors_client: Client, path: str
) -> None:
    response = await _preflight(cors_client, path, "POST", origin=OTHER)
    assert response.status == 403
    assert response.json == {"error": "Cross-origin requests from this origin are not allowed"}
    assert _cors_headers(response) == {}
    assert response.headers["Vary"] == "Origin"


async def test_plain_options_is_still_405(cors_client: Client) -> None:
    """OPTIONS without Access-Control-Request-Method is no preflight: the route has no OPTIONS."""
    response = await cors_client.request("OPTIONS", f"{API}/", headers={"Origin": PAGE})
    assert response.status == 405
    assert response.headers["Access-Control-Allow-Origin"] == PAGE


async def test_answers_carry_allow_origin_and_exposed_headers(cors_client: Client) -> None:
    sub = str(uuid.uuid4())
    response = await cors_client.request(
        "GET", f"{API}/", token=make_token(sub), headers={"Origin": PAGE}
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert response.headers["Vary"] == "Origin"
    exposed = _listed(response.headers["Access-Control-Expose-Headers"])
    for name in ("x-request-id", "retry-after", "location", "etag", "content-length",
                 "content-range", "idempotent-replayed", "upload-offset", "upload-length",
                 "upload-expires", "tus-resumable", "tus-version", "tus-max-size"):  # fmt: skip
        assert name in exposed
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", f"{API}/", {}, 401),
        ("GET", f"{API}/{SOME_ID}/", {"Authorization": "Bearer " + make_token("x")}, 404),
        ("PUT", f"/uploads/{KEY}?content_type=image%2Fjpeg&size=1&expires=1&sig=x", {}, 403),
        ("GET", f"/files/{KEY}?expires=1&sig=x", {}, 403),
        ("GET", "/no/such/route", {}, 404),
    ],
)
async def test_error_answers_carry_allow_origin(
    cors_client: Client, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    """Errors written by write_error are readable by the page too (else it sees a network
    error instead of the status and the JSON)."""
    response = await cors_client.request(method, path, headers={"Origin": PAGE, **headers})
    assert response.status == status, response.body
    assert "error" in response.json
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "x-request-id" in _listed(response.headers["Access-Control-Expose-Headers"])


async def test_early_413_carries_allow_origin(cors_service: Service) -> None:
    """A declared body over the limit is refused before it is read; the page must see why."""
    reader, writer = await asyncio.open_connection("127.0.0.1", cors_service.port)
    request = (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: x\r\nOrigin: {PAGE}\r\n"
        f"Authorization: Bearer {make_token('x')}\r\nContent-Length: {10**12}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    writer.write(request.encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    assert lines[0].startswith("HTTP/1.1 413")
    assert headers["Access-Control-Allow-Origin"] == PAGE


async def test_a_file_answer_carries_allow_origin(
    cors_client: Client, upload_media: Uploader
) -> None:
    caller = Caller(sub := str(uuid.uuid4()), make_token(sub))
    url = (await upload_media(caller, "a.jpg", client=cors_client))["url"]
    response = await cors_client.request("GET", url, headers={"Origin": PAGE, "Range": "bytes=0-9"})
    assert response.status == 206 and len(response.body) == 10
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "content-range" in _listed(response.headers["Access-Control-Expose-Headers"])


async def test_origin_not_listed_gets_no_allow_headers(cors_client: Client) -> None:
    response = await cors_client.request(
        "GET", f"{API}/", token=make_token("x"), headers={"Origin": OTHER}
    )
    assert response.status == 200
    assert _cors_headers(response) == {}
    assert response.headers["Vary"] == "Origin"
    no_origin = await cors_client.request("GET", f"{API}/", token=make_token("x"))
    assert _cors_headers(no_origin) == {}
    assert no_origin.headers["Vary"] == "Origin"


async def test_any_origin_is_star_without_credentials(tmp_path: Path) -> None:
    service = await start_service(_cors_settings(tmp_path, ("*",)))
    try:
        client = Client(f"http://127.0.0.1:{service.port}")
        preflight = await _preflight(client, f"{API}/upload/", "POST", origin=OTHER)
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        answer = await client.request("GET", f"{API}/", headers={"Origin": OTHER})
        assert answer.status == 401
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        for response in (preflight, answer):
            assert "Access-Control-Allow-Credentials" not in response.headers
    finally:
        await service.stop()


async def test_off_by_default_no_cors_header_at_all(client: Client) -> None:
    """The session service has the default (empty) cors_origins."""
    preflight = await _preflight(client, f"{API}/upload/", "POST")
    assert preflight.status == 403
    assert _cors_headers(preflight) == {}
    answer = await client.request("GET", f"{API}/", headers={"Origin": PAGE})
    assert _cors_headers(answer) == {} and "Vary" not in answer.headers


@pytest.mark.parametrize(
    "value",
    ["https://app.example.com/", "https://App.example.com", "app.example.com", "*,https://a.b",
     "null", "https://a.b/path"],
)  # fmt: skip
def test_cors_origins_must_be_origins(value: str) -> None:
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings(environ={"MEDIASVC_CORS_ORIGINS": value})


def test_cors_origins_from_the_environment() -> None:
    settings = load_settings(
        environ={"MEDIASVC_CORS_ORIGINS": "https://a.example.com, http://localhost:3000"}
    )
    assert settings.cors_origins == ("https://a.example.com", "http://localhost:3000")
    assert settings.cors_max_age == 600


async def test_tus_routes_answer_preflights_and_expose_the_tus_headers(
    cors_client: Client,
) -> None:
    """A page running tus-js-client: preflights of both tus routes pass, and it may read the
    headers tus answers with (Location, Upload-Offset, Upload-Expires, Tus-*)."""
    upload_url = f"{API}/tus/{uuid.uuid4()}"
    created = await _preflight(cors_client, f"{API}/tus/", "POST", headers="tus-resumable")
    assert created.status == 204
    for method in ("PATCH", "HEAD", "DELETE"):
        answer = await _preflight(cors_client, upload_url, method, headers="upload-offset")
        assert answer.status == 204
        assert method in answer.headers["Access-Control-Allow-Methods"].split(", ")
    sub = str(uuid.uuid4())
    fields = f"filename {_b64('a.txt')},entity_type {_b64('user')},entity_id {_b64(sub)}"
    answer = await cors_client.request(
        "POST", f"{API}/tus/", token=make_token(sub),
        headers={"Origin": PAGE, "Tus-Resumable": "1.0.0", "Upload-Length": "5",
                 "Upload-Metadata": fields},
    )  # fmt: skip
    assert answer.status == 201, answer.body
    exposed = _listed(answer.headers["Access-Control-Expose-Headers"])
    assert {"location", "upload-offset", "upload-expires", "upload-length", "tus-resumable",
            "tus-version", "tus-extension", "tus-max-size"} <= exposed  # fmt: skip


def _b64(value: str) -> str:
    import base64

    return base64.b64encode(value.encode()).decode()
