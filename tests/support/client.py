"""HTTP against the running service: requests, multipart bodies and what came back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

API = "/api/v1/drf/media"


def multipart_body(
    fields: dict[str, str],
    files: list[tuple[str, str, bytes]],
    boundary: str = "testboundary42",
    *,
    fields_first: bool = False,
) -> tuple[bytes, str]:
    """A multipart/form-data body; files first, as the spec's browser example sends them
    (or the fields first)."""
    file_parts: list[bytes] = []
    for field, filename, content in files:
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        file_parts += [header.encode(), content, b"\r\n"]
    field_parts: list[bytes] = []
    for name, value in fields.items():
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        field_parts += [header.encode(), value.encode(), b"\r\n"]
    parts = field_parts + file_parts if fields_first else file_parts + field_parts
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
        *,
        headers: dict[str, str] | None = None,
        fields_first: bool = False,
    ) -> Response:
        body, content_type = multipart_body(
            fields or {}, [("file", filename, content)], fields_first=fields_first
        )
        return await self.request(
            "POST",
            f"{API}/upload/",
            token=token,
            body=body,
            headers={"Content-Type": content_type, **(headers or {})},
        )
