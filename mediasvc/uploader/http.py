"""HTTP/1.1 for the uploader: keep-alive connections (the standard library's http.client) and
request bodies sent straight from a region of a file with sendfile, so a 50 MB chunk never
sits in the client's memory and costs it almost no CPU."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

PIECE = 1024 * 1024  # sendfile this much at a time: progress moves and a stop is noticed
USER_AGENT = "mediasvc-upload/0.1"


class Dropped(Exception):
    """The connection failed before a whole answer came back (refused, reset, timed out)."""


class Stopped(Exception):
    """The run is being stopped (Ctrl-C): the request was cut off on purpose."""


@dataclass(frozen=True)
class FileRegion:
    """`length` bytes of an open file from `offset`: the body of one tus chunk."""

    file: BinaryIO
    offset: int
    length: int


@dataclass(frozen=True)
class Reply:
    """One answer: status, headers (names in lower case) and body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """A header's value, or None."""
        return self.headers.get(name.lower())

    @property
    def message(self) -> str:
        """What the server said went wrong: its JSON `error`, else the start of the body."""
        try:
            document = json.loads(self.body)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return str(document["error"])
        text = self.body[:200].decode("utf-8", "replace").strip()
        return text or f"HTTP {self.status}"


Origin = tuple[str, str, int]


class Connections:
    """Keep-alive connections of one thread, one per origin (http.client is not thread-safe,
    so every worker thread has its own)."""

    def __init__(self, timeout: float, stop: threading.Event) -> None:
        self.timeout = timeout
        self.stop = stop
        self._open: dict[Origin, http.client.HTTPConnection] = {}

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | FileRegion | None = None,
        sent: Callable[[int], None] | None = None,
    ) -> Reply:
        """Send one request and read its whole answer; Dropped if the connection fails."""
        origin, target = _split(url)
        connection = self._connection(origin)
        try:
            return _exchange(connection, method, target, headers, body, sent, self.stop)
        except (OSError, http.client.HTTPException) as exc:
            self._discard(origin)
            raise Dropped(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        except BaseException:
            self._discard(origin)  # a half-sent request leaves the connection unusable
            raise

    def close(self) -> None:
        """Close every connection of this thread."""
        for origin in list(self._open):
            self._discard(origin)

    def _connection(self, origin: Origin) -> http.client.HTTPConnection:
        connection = self._open.get(origin)
        if connection is None:
            scheme, host, port = origin
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            connection = kind(host, port, timeout=self.timeout)
            self._open[origin] = connection
        return connection

    def _discard(self, origin: Origin) -> None:
        connection = self._open.pop(origin, None)
        if connection is not None:
            connection.close()


def _split(url: str) -> tuple[Origin, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return (parts.scheme, parts.hostname, port), target


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes | FileRegion | None,
    sent: Callable[[int], None] | None,
    stop: threading.Event,
) -> Reply:
    """One request on `connection`. A body the server stopped reading (it answered early: a
    429, a 413) ends the sending; the answer is read all the same."""
    length = len(body) if isinstance(body, bytes) else body.length if body else 0
    connection.putrequest(method, target, skip_accept_encoding=True)
    for name, value in {"User-Agent": USER_AGENT, **headers}.items():
        connection.putheader(name, value)
    if body is not None or method in ("POST", "PATCH", "PUT"):
        connection.putheader("Content-Length", str(length))
    connection.endheaders()
    try:
        if isinstance(body, bytes):
            connection.send(body)
        elif body is not None:
            assert connection.sock is not None
            _send_region(connection.sock, body, sent, stop)
    except OSError as exc:
        return _early_answer(connection, exc)
    return _read(connection.getresponse())


def _send_region(
    sock: socket.socket,
    region: FileRegion,
    sent: Callable[[int], None] | None,
    stop: threading.Event,
) -> None:
    """The region through sendfile, a piece at a time (TLS sockets fall back to send)."""
    position, end = region.offset, region.offset + region.length
    while position < end:
        if stop.is_set():
            raise Stopped
        count = sock.sendfile(region.file, position, min(PIECE, end - position))
        if count == 0:
            raise OSError("the file became shorter while it was being sent")
        position += count
        if sent is not None:
            sent(count)


def _early_answer(connection: http.client.HTTPConnection, error: OSError) -> Reply:
    """The answer a server sent before it closed on the rest of the body, if there is one."""
    try:
        return _read(connection.getresponse())
    except (OSError, http.client.HTTPException):
        raise error from None


def _read(response: http.client.HTTPResponse) -> Reply:
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, headers, body)
