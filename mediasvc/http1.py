"""HTTP/1.1 connections whose early answers every client can read.

Tornado closes a connection the moment it has sent an answer to a request whose body it has
not read. The unread bytes in the socket then make the kernel send a reset, which destroys
the answer on its way: browsers, SDKs and proxies (nginx answers 502) see a connection error
instead of the 413 or 429. The connection here does what nginx's `lingering_close` does: an
early answer says `Connection: close`, the write side is shut once it is out, and the rest of
the body is read and thrown away (bounded in time, silence and bytes) before the socket is
closed. It also times out bodies that stall, answers a header block over the limit with a
431, and keeps a connection alive after an early answer to a request that has no body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.web
from tornado import httputil, iostream
from tornado.http1connection import (
    HTTP1Connection,
    HTTP1ConnectionParameters,
    HTTP1ServerConnection,
)
from tornado.ioloop import IOLoop
from tornado.log import gen_log

from mediasvc import metrics

log = logging.getLogger("mediasvc.request")

HARD_HEADER_FACTOR = 4
"""Header blocks up to this many times `max_header_size` are read and answered with a 431;
larger ones are cut off unanswered (Tornado closes), so one connection never buffers more."""

YIELD_BYTES = 256 * 1024
"""A body read without waiting yields to the event loop after this many bytes (Tornado's
own threshold), so that one fast client does not hold up the other connections."""


@dataclass(frozen=True)
class EarlyAnswerLimits:
    """How long and how much an early answer's connection drains, and the header limit."""

    linger_timeout: float
    linger_idle_timeout: float
    linger_max_bytes: int
    max_header_size: int


class HeaderBlockTooLarge(Exception):
    """The request's header block is over `max_header_size` (answered with a 431)."""


class LingeringConnection(HTTP1Connection):
    """The server side of one request, with lingering close, stall timeouts and the 431."""

    def __init__(
        self,
        stream: iostream.IOStream,
        params: HTTP1ConnectionParameters,
        context: object,
        limits: EarlyAnswerLimits,
    ) -> None:
        self.limits = limits
        self._answered_early = False
        self._lingering = False
        self._discarded = 0
        self._drained = False
        self._timers: dict[str, object] = {}
        self._stall: tuple[float, Callable[[], None]] | None = None
        self._heard = 0.0  # when the body last sent something (io_loop.time())
        self._delivering = False
        super().__init__(stream, False, params, context)

    # ---- a stalled body

    def watch_stall(self, timeout: float, on_stall: Callable[[], None]) -> None:
        """Call `on_stall` once the body sends nothing for `timeout` seconds.

        The clock only runs while the connection waits for the client: not while the
        handler digests a chunk (then the client cannot send, by our own backpressure).
        One timer per request, looked at when it fires: a chunk costs a clock reading.
        """
        self._stall = (timeout, on_stall)
        self._heard = self.stream.io_loop.time()
        self._set_timer("stall", timeout, self._check_stall)

    def _check_stall(self) -> None:
        self._timers.pop("stall", None)
        if self._stall is None or self._write_finished or self._read_finished:
            return
        timeout, on_stall = self._stall
        quiet = self.stream.io_loop.time() - self._heard
        if self._delivering or quiet < timeout:
            self._set_timer(
                "stall", timeout if self._delivering else timeout - quiet, self._check_stall
            )
            return
        self._stall = None
        on_stall()

    # ---- answering before the body is read

    def body_unread(self) -> bool:
        """True while the request has a body that has not been read to its end."""
        headers = self._request_headers
        if self._read_finished or headers is None:
            return False
        if "Transfer-Encoding" in headers:
            return True
        return headers.get("Content-Length", "0").strip() not in ("", "0")

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        if self.body_unread():
            # The client learns now that this connection ends after the answer; the rest of
            # the body is only drained (capped by linger_max_bytes, not by the body limit).
            self._answered_early = True
            self._disconnect_on_finish = True
            self._max_body_size = sys.maxsize
            headers["Connection"] = "close"
        return super().write_headers(start_line, headers, chunk)

    def finish(self) -> None:
        if not self.body_unread():
            # Nothing left to read (a GET refused in prepare): keep the connection alive,
            # where Tornado would close it without saying so.
            self._read_finished = True
        super().finish()

    def _finish_request(self, future: asyncio.Future[None] | None) -> None:
        unread = not (self._read_finished or self._drained)
        if self._answered_early and unread and not self.stream.closed():
            self._clear_callbacks()
            self._start_linger()
            return
        super()._finish_request(future)

    def _start_linger(self) -> None:
        """The answer is out: say so with a FIN, then drain within the limits."""
        self._lingering = True
        with suppress(OSError):
            self.stream.socket.shutdown(socket.SHUT_WR)
        self._set_timer("linger", self.limits.linger_timeout, self.close)
        self._set_timer("idle", self.limits.linger_idle_timeout, self.close)

    def _read_body(
        self,
        code: int,
        headers: httputil.HTTPHeaders,
        delegate: httputil.HTTPMessageDelegate,
    ) -> Awaitable[None] | None:
        try:
            body = super()._read_body(code, headers, delegate)
        except httputil.HTTPInputError:
            self._after_answer_error()
            raise
        return None if body is None else self._reading(body)

    async def _reading(self, body: Awaitable[None]) -> None:
        try:
            await body
            self._drained = True
        except httputil.HTTPInputError:
            self._after_answer_error()
            raise
        finally:
            self._cancel_timer("stall")
            if self._lingering:
                self.close()  # drained to the end (or failed): the answer is long delivered

    def _after_answer_error(self) -> None:
        """A malformed rest of a body already answered just ends the connection: Tornado's
        bare 400 must not follow the answer."""
        if self._write_finished:
            self.close()
            raise iostream.StreamClosedError()

    async def _read_fixed_body(
        self, content_length: int, delegate: httputil.HTTPMessageDelegate
    ) -> None:
        # Tornado's loop, but a chunk the socket already holds is taken with one recv into a
        # new bytes object: IOStream.read_bytes would zero a buffer, recv into it, append that
        # to its read buffer and copy the chunk out again (two copies and a memset of every
        # body byte, and a future per chunk, on the event loop).
        work = 0
        while content_length > 0:
            size = min(self.params.chunk_size, content_length)
            body = self._received_now(size)
            if body is None:
                body = await self.stream.read_bytes(size, partial=True)
            content_length -= len(body)
            await self._deliver_body(delegate, body)
            work += len(body)
            if work >= YIELD_BYTES:  # other connections get their turn, as in Tornado's loop
                work = 0
                await asyncio.sleep(0)

    def _received_now(self, size: int) -> bytes | None:
        """Up to `size` bytes the socket holds right now, or None: when it holds none, and
        whenever IOStream must do the read (bytes it has buffered, TLS, a closed stream, an
        error or the end of the stream, which its own read then meets again and reports)."""
        stream = self.stream
        if type(stream) is not iostream.IOStream or stream._read_buffer_size or stream.closed():
            return None
        try:
            data = stream.socket.recv(size)
        except OSError:
            return None
        return data or None

    async def _deliver_body(self, delegate: httputil.HTTPMessageDelegate, data: bytes) -> None:
        if self._write_finished:
            self._discard(len(data))
            return
        self._delivering = True
        try:
            await super()._deliver_body(delegate, data)
        finally:
            self._delivering = False
            self._heard = self.stream.io_loop.time()

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > self.limits.linger_max_bytes:
            self.close()
        elif self._lingering:
            self._set_timer("idle", self.limits.linger_idle_timeout, self.close)

    # ---- a header block over the limit

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        if len(data) > self.limits.max_header_size:
            raise HeaderBlockTooLarge(data[:16])
        return super()._parse_headers(data)

    def read_response(self, delegate: httputil.HTTPMessageDelegate) -> Awaitable[bool]:
        return self._read_or_refuse(delegate)

    async def _read_or_refuse(self, delegate: httputil.HTTPMessageDelegate) -> bool:
        try:
            return await super().read_response(delegate)
        except HeaderBlockTooLarge as exc:
            await self._refuse_header_block(exc.args[0])
            return False

    async def _refuse_header_block(self, start: bytes) -> None:
        """A 431 JSON answer written here (no handler saw the request), then the drain."""
        request_id = uuid.uuid4().hex
        limit = self.limits.max_header_size
        body = json.dumps({"error": f"Request header block exceeds the maximum of {limit} bytes"})
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "Content-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n"
            f"X-Request-Id: {request_id}\r\n\r\n"
        )
        method = start.split(b" ", 1)[0].decode("latin1").strip()
        log.info(json.dumps({"request_id": request_id, "method": method[:16], "status": 431}))
        metrics.REQUESTS.labels("connection", metrics.method_label(method), "431").inc()
        try:
            await self.stream.write(head.encode() + body.encode())
            with suppress(OSError):
                self.stream.socket.shutdown(socket.SHUT_WR)
            await drain(self.stream, self.limits, self.params.chunk_size)
        except iostream.StreamClosedError:
            pass
        finally:
            self.close()

    # ---- timers

    def _set_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer(name)
        self._timers[name] = IOLoop.current().call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            IOLoop.current().remove_timeout(handle)

    def close(self) -> None:
        for name in list(self._timers):
            self._cancel_timer(name)
        self._stall = None
        super().close()


async def drain(stream: iostream.IOStream, limits: EarlyAnswerLimits, chunk_size: int) -> None:
    """Read and drop whatever the client still sends, within the lingering limits."""
    loop = IOLoop.current()
    deadline = loop.time() + limits.linger_timeout
    drained = 0
    while drained <= limits.linger_max_bytes:
        until = min(deadline, loop.time() + limits.linger_idle_timeout)
        read = asyncio.ensure_future(stream.read_bytes(chunk_size, partial=True))
        try:
            drained += len(await asyncio.wait_for(asyncio.shield(read), until - loop.time()))
        except TimeoutError:
            read.add_done_callback(lambda future: future.exception())
            return


class LingeringServerConnection(HTTP1ServerConnection):
    """Serves the requests of one client connection with `LingeringConnection`."""

    def __init__(
        self,
        stream: iostream.IOStream,
        params: HTTP1ConnectionParameters,
        context: object,
        limits: EarlyAnswerLimits,
    ) -> None:
        super().__init__(stream, params, context)
        self.limits = limits

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        # Tornado's loop, but with our connection class (Tornado's names it directly).
        try:
            while True:
                conn = LingeringConnection(self.stream, self.params, self.context, self.limits)
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except (
                    iostream.StreamClosedError,
                    iostream.UnsatisfiableReadError,
                    asyncio.CancelledError,
                ):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    conn.close()
                    return
                if not ret:
                    return
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


class EarlyAnswerServer(tornado.httpserver.HTTPServer):
    """An HTTPServer whose connections are `LingeringServerConnection`s."""

    limits: EarlyAnswerLimits

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        context = tornado.httpserver._HTTPRequestContext(
            stream, address, self.protocol, self.trusted_downstream
        )
        conn = LingeringServerConnection(stream, self.conn_params, context, self.limits)
        self._connections.add(conn)
        conn.start_serving(self)


def make_server(
    app: tornado.web.Application, limits: EarlyAnswerLimits, **options: Any
) -> EarlyAnswerServer:
    """The HTTP server of one process; Tornado itself only cuts off huge header blocks."""
    server = EarlyAnswerServer(
        app, max_header_size=limits.max_header_size * HARD_HEADER_FACTOR, **options
    )
    server.limits = limits
    return server
