"""Every error is JSON with a request id; unknown routes and methods included."""

from __future__ import annotations

from tests.support.client import API, Client
from tests.support.tokens import Caller


async def test_unknown_route_is_json_404(client: Client) -> None:
    response = await client.request("GET", "/nope")
    assert response.status == 404
    assert response.json == {"error": "Not found"}
    assert response.headers["X-Request-Id"]


async def test_wrong_method_is_json_405(client: Client, user: Caller) -> None:
    response = await client.request("PUT", f"{API}/", token=user.token, body=b"{}")
    assert response.status == 405
    assert response.json == {"error": "Method Not Allowed"}


async def test_request_id_is_echoed_when_sane(client: Client, user: Caller) -> None:
    response = await client.request(
        "GET", f"{API}/", token=user.token, headers={"X-Request-Id": "client-id-12345"}
    )
    assert response.headers["X-Request-Id"] == "client-id-12345"
    hostile = await client.request(
        "GET", f"{API}/", token=user.token, headers={"X-Request-Id": "bad id <script>"}
    )
    assert hostile.headers["X-Request-Id"] != "bad id <script>"


async def test_json_body_over_limit_is_413(client: Client, user: Caller) -> None:
    body = b'{"media_ids": ["' + b"x" * (2 * 1024 * 1024) + b'"]}'
    response = await client.request(
        "POST",
        f"{API}/bulk_delete/",
        token=user.token,
        body=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert response.json == {"error": "Request body exceeds the maximum of 1048576 bytes"}


async def test_chunked_json_body_over_limit_is_413(client: Client, user: Caller) -> None:
    async def produce(write):  # type: ignore[no-untyped-def]
        for _ in range(40):
            await write(b"x" * 65536)

    from tornado.httpclient import HTTPRequest

    request = HTTPRequest(
        f"{client.base}{API}/bulk_delete/",
        method="POST",
        headers={"Authorization": f"Bearer {user.token}", "Content-Type": "application/json"},
        body_producer=produce,
    )
    try:
        response = await client.http.fetch(request, raise_error=False)
    except OSError:
        return  # the server answered and closed while we were still sending
    assert response.code == 413


async def test_405_says_what_is_allowed_and_401_how_to_authenticate(
    client: Client, user: Caller
) -> None:
    response = await client.request("PUT", f"{API}/", token=user.token, body=b"{}")
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
    detail = await client.request("POST", f"{API}/{user.sub}/", token=user.token, body=b"{}")
    assert detail.headers["Allow"] == "GET, PATCH, DELETE"
    unsigned = await client.request(
        "POST", "/uploads/x?content_type=&size=1&expires=0&sig=", body=b""
    )
    assert unsigned.status == 405 and unsigned.headers["Allow"] == "PUT"
    anonymous = await client.request("GET", f"{API}/")
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
