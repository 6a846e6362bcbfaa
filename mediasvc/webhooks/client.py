"""The HTTP request of one delivery attempt: signed, to public addresses only, bounded.

The address check happens on the address actually connected to: tornado's client resolves
the host through `PublicResolver`, which drops every non-public address of the DNS answer
(an IP literal included), so a name that resolves to 127.0.0.1 or 10.0.0.1 is refused at
connect time, whatever it resolved to when the endpoint was registered. Redirects are not
followed (a 3xx is a failure), one attempt takes at most `webhook_timeout` seconds in all,
and at most `webhook_max_response_bytes` of the answer's body are read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

from mediasvc import __version__
from mediasvc.settings import Settings
from mediasvc.webhooks.signing import signature_header

USER_AGENT = f"mediasvc-webhooks/{__version__}"
MAX_HEADER_SIZE = 64 * 1024
MAX_ERROR = 500


class NotPublic(OSError):
    """The host has no address a webhook may be sent to."""


def is_public(address: str) -> bool:
    """Whether an IP address is a public (global unicast) one; IPv4-mapped IPv6 addresses
    count as the IPv4 address they map."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicResolver(Resolver):
    """The default resolver, with the non-public addresses of each answer dropped (unless
    private ones are allowed)."""

    def initialize(self, allow_private: bool = False) -> None:
        self._resolver = DefaultLoopResolver()
        self._allow_private = allow_private

    def close(self) -> None:
        self._resolver.close()

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        answers: list[tuple[int, Any]] = await self._resolver.resolve(host, port, family)
        if self._allow_private:
            return answers
        allowed = [answer for answer in answers if is_public(answer[1][0])]
        if not allowed:
            found = ", ".join(sorted({str(answer[1][0]) for answer in answers}))
            raise NotPublic(f"{host} has no public address (it resolves to {found})")
        return allowed


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the receiver's status (if it answered), how long it took,
    what went wrong, and when the receiver asked to be tried again (seconds)."""

    status_code: int | None
    duration_ms: int
    error: str | None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        """A 2xx answer: the receiver took it."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class _Answer:
    """What the answer's head said, seen as it arrives (it counts even when the body is
    cut off at the limit)."""

    status: int | None = None
    retry_after: float | None = None
    read: int = 0

    def header_line(self, line: str) -> None:
        if self.status is None:
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                self.status = int(parts[1])
            return
        name, _, value = line.partition(":")
        if name.strip().lower() == "retry-after":
            self.retry_after = retry_after_seconds(value.strip())

    def body_chunk(self, chunk: bytes) -> None:
        self.read += len(chunk)  # read and dropped: nobody needs the answer's body


def retry_after_seconds(value: str) -> float | None:
    """A Retry-After value (seconds, or an HTTP date) as seconds from now."""
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


class WebhookClient:
    """Sends signed deliveries, at most `webhook_concurrency` at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resolver = PublicResolver(allow_private=settings.webhook_allow_private)
        cap = settings.webhook_max_response_bytes
        self._http = SimpleAsyncHTTPClient(
            force_instance=True,
            max_clients=settings.webhook_concurrency,
            resolver=self._resolver,
            max_body_size=cap,
            max_buffer_size=cap + MAX_HEADER_SIZE,
            max_header_size=MAX_HEADER_SIZE,
        )

    def close(self) -> None:
        """Release the HTTP client and its resolver."""
        self._http.close()
        self._resolver.close()

    async def send(self, url: str, message_id: str, body: str, keys: list[str]) -> Outcome:
        """POST `body` to `url`, signed with each of `keys`; never raises for the receiver's
        or the network's trouble (the outcome tells it)."""
        timeout = self.settings.webhook_timeout
        timestamp = int(time.time())
        answer = _Answer()
        request = HTTPRequest(
            url,
            method="POST",
            body=body.encode(),
            headers={
                "Content-Type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(keys, message_id, timestamp, body),
            },
            user_agent=USER_AGENT,
            follow_redirects=False,
            connect_timeout=timeout,
            request_timeout=timeout,
            decompress_response=False,
            header_callback=answer.header_line,
            streaming_callback=answer.body_chunk,
        )
        started = time.monotonic()
        status: int | None
        try:
            response = await asyncio.wait_for(
                self._http.fetch(request, raise_error=False), timeout + 1
            )
            status, error = response.code, _status_error(response.code, response.headers)
        except Exception as exc:  # the network's or the receiver's trouble, never ours
            status, error = answer.status, self._describe(exc, answer)
        duration = int((time.monotonic() - started) * 1000)
        return Outcome(status, duration, error, answer.retry_after)

    def _describe(self, exc: Exception, answer: _Answer) -> str:
        """Why an attempt failed, in words an admin reads in the delivery list."""
        if answer.status is not None:
            cap = self.settings.webhook_max_response_bytes
            cut = f"the answer was not read beyond {cap} bytes ({_reason(exc)})"
            return cut if 200 <= answer.status < 300 else f"{_status_error(answer.status)}; {cut}"
        if isinstance(exc, (HTTPTimeoutError, TimeoutError)):
            return f"Timed out after {self.settings.webhook_timeout:g} s"
        return _reason(exc)


def _status_error(code: int, headers: Any = None) -> str | None:
    if 200 <= code < 300:
        return None
    if 300 <= code < 400:
        location = headers.get("Location", "") if headers is not None else ""
        target = f" to {location[:200]}" if location else ""
        return f"Redirect ({code}){target} not followed"
    return f"The receiver answered {code}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NotPublic):
        return str(exc)[:MAX_ERROR]
    if isinstance(exc, HTTPClientError):
        return (exc.message or f"HTTP {exc.code}")[:MAX_ERROR]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR]
