"""The base of every handler: JSON errors in one place, request ids, auth, bodies as models."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import tornado.web
from tornado.http1connection import HTTP1Connection

from mediasvc import metrics
from mediasvc.auth import Principal
from mediasvc.context import AppContext
from mediasvc.cors import CorsMixin
from mediasvc.errors import MediaError, RequestTimeout, TooLarge, TooManyRequests
from mediasvc.http1 import LingeringConnection
from mediasvc.models.base import Error
from mediasvc.wire import decode_fields, decode_json, encode

log = logging.getLogger("mediasvc.request")
_KNOWN = frozenset(status.value for status in HTTPStatus)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{8,64}$")
T = TypeVar("T", bound=msgspec.Struct)

if TYPE_CHECKING:
    _HandlerBase = tornado.web.RequestHandler
else:
    _HandlerBase = object


class ContextMixin(_HandlerBase):
    """Typed access to the app context and a per-request id, for any RequestHandler."""

    _request_id: str | None = None

    @property
    def ctx(self) -> AppContext:
        """The shared context of this process."""
        context: AppContext = self.application.settings["context"]
        return context

    @property
    def request_id(self) -> str:
        """The client's X-Request-Id if it looks sane, else a new one."""
        if self._request_id is None:
            given = self.request.headers.get("X-Request-Id", "")
            self._request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        return self._request_id


class JsonErrorsMixin(CorsMixin, ContextMixin):
    """`{"error": "..."}` for every error status; domain errors mapped to their status."""

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements."""
        base = tornado.web.RequestHandler
        return [
            m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
            if getattr(type(self), m.lower(), None) is not getattr(base, m.lower(), None)
        ]  # fmt: skip

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Never a traceback: a short JSON message, and Retry-After where it helps."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, MediaError):
            self.set_status(exc.status)
            message = exc.message
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(exc.retry_after))
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = HTTPStatus(status_code).phrase if status_code in _KNOWN else "Error"
            if status_code >= 500:
                message = "Internal server error"
        status = self.get_status()
        if status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="mediasvc"')
        self.clear_header("Content-Disposition")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(encode(Error(error=message)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Domain errors are expected: one info line; anything else: the traceback, with the id."""
        if isinstance(value, (MediaError, tornado.web.HTTPError)):
            log.info("request %s refused: %s", self.request_id, value)
        else:
            log.error("request %s failed", self.request_id, exc_info=(typ, value, tb))


@tornado.web.stream_request_body
class BaseHandler(JsonErrorsMixin, tornado.web.RequestHandler):
    """JSON API handler: authenticate with `self.principal`, read the body with `self.decode`,
    answer with `self.write_model`.

    Bodies are streamed in, so an oversized one is refused with a JSON 413 before it is
    read (a buffered handler would hold it all in memory first).
    """

    _principal: Principal | None = None
    _body: bytearray | None = None
    _body_refused = False

    @property
    def body_limit(self) -> int:
        """Largest request body this handler takes."""
        return self.ctx.settings.max_json_body_size

    _tracked = False

    async def prepare(self) -> None:
        """Refuse unknown methods and over-limit bodies before reading a byte of the body."""
        self._tracked = True
        self.ctx.requests.begin()
        self.check_method()
        limit = self.body_limit
        declared = self.request.headers.get("Content-Length", "")
        if re.fullmatch(r"[0-9]{1,19}", declared) and int(declared) > limit:
            raise TooLarge(f"Request body exceeds the maximum of {limit} bytes")
        # Chunked bodies are counted in data_received; Tornado's own check (which answers
        # a bare 400) is a backstop set higher, because it counts bytes it has coalesced
        # but not yet handed to us.
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.set_max_body_size(2 * limit)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Gather a small JSON body, refusing it as soon as it passes the limit."""
        if self._body_refused:
            return None
        if self._body is None:
            self._body = bytearray()
        if len(self._body) + len(chunk) > self.body_limit:
            self._body_refused = True
            self.refuse(TooLarge(f"Request body exceeds the maximum of {self.body_limit} bytes"))
            return None
        self._body += chunk
        return None

    def check_method(self) -> None:
        """A 405 (with `Allow`) for a method this handler does not implement; a CORS
        preflight is answered here, before the method check and before authentication."""
        self.answer_preflight()
        if (self.request.method or "") not in self.allowed_methods():
            raise tornado.web.HTTPError(405)

    def on_finish(self) -> None:
        self._untrack()

    def on_connection_close(self) -> None:
        self._untrack()
        super().on_connection_close()

    _upload_slot = False

    async def take_upload_slot(self) -> None:
        """Count this request as an upload. Over `max_concurrent_uploads` it waits, its body
        unread, up to `upload_slot_wait` seconds for a slot, then it is a 429. Once it has a
        slot, a body that stalls for `upload_stall_timeout` seconds loses it (408)."""
        settings = self.ctx.settings
        if not await self.ctx.uploads.acquire(
            settings.max_concurrent_uploads, settings.upload_slot_wait
        ):
            raise TooManyRequests("Too many uploads in progress; try again shortly")
        metrics.UPLOADS_ACTIVE.inc()
        self._upload_slot = True
        connection = self.request.connection
        if isinstance(connection, LingeringConnection):
            connection.watch_stall(settings.upload_stall_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        if self._finished:
            return
        self.release_body()
        timeout = self.ctx.settings.upload_stall_timeout
        self.refuse(RequestTimeout(f"No body data received for {timeout:g} seconds"))

    def release_body(self) -> None:
        """Drop what was received of a body that will not be finished (spool files)."""

    def _untrack(self) -> None:
        if self._upload_slot:
            self._upload_slot = False
            self.ctx.uploads.release()
            metrics.UPLOADS_ACTIVE.dec()
        if self._tracked:
            self._tracked = False
            self.ctx.requests.end()

    def refuse(self, exc: Exception) -> None:
        """Answer with an error while the body is still arriving. The connection says
        `Connection: close` and drains the rest of the body before it closes (http1.py)."""
        if not isinstance(exc, MediaError):
            log.error("request %s failed", self.request_id, exc_info=exc)
        if not self._finished:
            self.send_error(500, exc_info=(type(exc), exc, exc.__traceback__))

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_cors_headers()

    def authenticate(self) -> Principal:
        """Verify the bearer token (401 if anything is wrong) and remember the caller."""
        if self._principal is None:
            header = self.request.headers.get("Authorization")
            self._principal = self.ctx.tokens.principal_from_header(header)
        return self._principal

    @property
    def principal(self) -> Principal:
        """The authenticated caller."""
        return self.authenticate()

    @property
    def base_url(self) -> str:
        """Absolute URL prefix for links: the configured public URL, else this request's host."""
        configured = self.ctx.settings.public_url
        if configured:
            return configured.rstrip("/")
        return f"{self.request.protocol}://{self.request.host}"

    def decode(self, model: type[T]) -> T:
        """The JSON body as `model`, or a 400 that names the field at fault."""
        return decode_json(model, bytes(self._body or b""), self.ctx.settings)

    def decode_query(self, model: type[T]) -> T:
        """The query string as `model` (each parameter's last value), or a 400 naming it."""
        given = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        return decode_fields(model, given, self.ctx.settings)

    def write_model(self, value: msgspec.Struct, status: int = 200) -> None:
        """Answer with a model, as JSON."""
        self.set_status(status)
        self.finish(encode(value))

    def no_content(self) -> None:
        """Answer 204: no body, so no Content-Type either."""
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class NotFoundHandler(BaseHandler):
    """Unknown routes: a JSON 404."""

    async def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "Not found")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One structured log line per request (no query string: it may hold signatures)."""
    request = handler.request
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.ERROR
    if log.isEnabledFor(level):  # the line is not even built when nobody reads it
        principal = getattr(handler, "_principal", None)
        record = {
            "request_id": getattr(handler, "request_id", None),
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round(request.request_time() * 1000, 1),
            "remote_ip": request.remote_ip,
            "sub": principal.sub if principal else None,
        }
        log.log(level, json.dumps(record))
    route = metrics.route_label(handler)
    method = metrics.method_label(request.method)
    metrics.REQUESTS.labels(route, method, str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route, method).observe(request.request_time())
