"""tus 1.0.0 resumable uploads at /api/v1/drf/media/tus/: create (POST), resume (HEAD, PATCH),
terminate (DELETE), discover (OPTIONS).

The handlers parse the protocol's headers, authenticate, and hand the bytes to a session of
the tus service as they arrive (never buffered). Every answer carries `Tus-Resumable`, every
answer about an unfinished upload its `Upload-Expires`, and errors are the usual JSON ones
with the protocol's statuses (412, 409, 415, 460, 410, 423, 413).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import tornado.ioloop
import tornado.web

from mediasvc import metrics
from mediasvc.errors import BadRequest, TooLarge
from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.media import API, MEDIA_ID_PARAM
from mediasvc.models.base import Binary, Count, Error, Url
from mediasvc.openapi import Answer, Header, Operation, Param, PathItem
from mediasvc.services.tus_append import AppendSession
from mediasvc.tus_protocol import (
    CHECKSUMS,
    EXTENSIONS,
    OFFSET_CONTENT_TYPE,
    REASONS,
    VERSION,
    PreconditionFailed,
    UnsupportedMediaType,
    check_version,
    encode_metadata,
    http_date,
    parse_checksum,
    parse_concat,
    parse_creation_length,
    parse_integer,
    parse_metadata,
)
from mediasvc.tus_records import TusKind, TusState, TusUpload

TUS = f"{API}/tus"
_UPLOAD_PATH = re.compile(rf"^{re.escape(TUS)}/([0-9a-fA-F-]{{36}})/?$")
_OVERRIDES = frozenset({"PATCH", "DELETE"})


# ---- the document: tus operations are headers and statuses, bodies are bytes

_TUS_VERSION = Literal["1.0.0"]
_TUS_ERRORS = {
    400: "Malformed tus header, metadata or value (or the completed file was rejected)",
    401: "Missing, malformed, expired or invalid bearer token",
    403: "No permission for the entity, or a final upload cannot change",
    404: "No such upload, or not the caller's",
    409: "Upload-Offset is not the upload's offset",
    410: "The upload expired or was rejected",
    412: "Tus-Resumable is missing or not 1.0.0 (the answer carries Tus-Version)",
    413: "Over the upload's length, its media type's limit or tus_max_chunk_size",
    415: "The PATCH body is not application/offset+octet-stream",
    423: "Another request is appending to this upload; retry after Retry-After",
    429: "Too many uploads in progress; try again after Retry-After seconds",
    460: "The chunk does not match its Upload-Checksum (it was discarded)",
    503: "The database or the storage fails or cannot be reached; try again",
    507: "No space left to receive the upload",
}
_RESUMABLE = Param("Tus-Resumable", "header", _TUS_VERSION, "Must be 1.0.0 (else 412)", True)


def _answer(description: str, body: Any = None, **headers: Header) -> Answer:
    """A tus answer: it always says Tus-Resumable, and when an unfinished upload expires."""
    always = {
        "Tus-Resumable": Header("Always 1.0.0", _TUS_VERSION, required=True),
        "Upload-Expires": Header("When an unfinished upload expires (RFC 9110 date)"),
    }
    return Answer(description, body, headers={**always, **headers})


def _errors(*codes: int) -> dict[int, Answer]:
    """JSON errors with the tus headers; a 412 also says which versions the server speaks."""
    versions = {"Tus-Version": Header("The versions this server speaks")}
    return {
        code: _answer(_TUS_ERRORS[code], Error, **(versions if code == 412 else {}))
        for code in codes
    }


def _discovery(operation_id: str) -> Operation:
    return Operation(
        operation_id,
        "Discover the tus versions, extensions, limits and checksum algorithms",
        "tus",
        {
            204: _answer(
                "The server's tus configuration",
                **{
                    "Tus-Version": Header("1.0.0"),
                    "Tus-Extension": Header("The supported extensions"),
                    "Tus-Max-Size": Header("The largest upload", Count),
                    "Tus-Checksum-Algorithm": Header("sha1,sha256,md5"),
                },
            )
        },
        public=True,
    )


def upload_location(base_url: str, upload_id: str) -> str:
    """The URL of one upload: its `Location`, ending with its id (the media's id)."""
    return f"{base_url}{TUS}/{upload_id}"


def upload_id_of(path: str) -> str | None:
    """The upload id an upload URL's path names (for `Upload-Concat: final;...`)."""
    match = _UPLOAD_PATH.match(path)
    return match.group(1).lower() if match else None


@tornado.web.stream_request_body
class TusHandler(BaseHandler):
    """What both tus routes share: the method override, the version check, the headers."""

    session: AppendSession | None = None
    body_complete = False
    _answer_headers: dict[str, str] | None = None

    @property
    def body_limit(self) -> int:
        return self.ctx.settings.tus_max_chunk_size

    async def prepare(self) -> None:
        override = self.request.headers.get("X-HTTP-Method-Override")
        if override is not None:
            if override.strip().upper() not in _OVERRIDES:
                raise BadRequest("X-HTTP-Method-Override must be PATCH or DELETE")
            self.request.method = override.strip().upper()
        await super().prepare()
        if self.request.method != "OPTIONS":
            check_version(self.request.headers.get("Tus-Resumable"))

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Tus-Resumable", VERSION)
        for name, value in (self._answer_headers or {}).items():
            self.set_header(name, value)

    def remember(self, name: str, value: str) -> None:
        """A header of this answer that error answers keep too (`Upload-Expires`)."""
        self._answer_headers = {**(self._answer_headers or {}), name: value}
        self.set_header(name, value)

    def saw(self, upload: TusUpload) -> None:
        """The request found its upload: answers say when it expires while unfinished."""
        if upload.state is TusState.RECEIVING:
            self.remember("Upload-Expires", http_date(upload.expires_at))

    def set_status(self, status_code: int, reason: str | None = None) -> None:
        super().set_status(status_code, reason or REASONS.get(status_code))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PreconditionFailed):
            self.set_header("Tus-Version", VERSION)
        super().write_error(status_code, **kwargs)

    def options(self, *args: str, **kwargs: str) -> None:
        """Discovery (no token needed): versions, extensions, limits, checksum algorithms."""
        self.set_header("Tus-Version", VERSION)
        self.set_header("Tus-Extension", ",".join(EXTENSIONS))
        self.set_header("Tus-Max-Size", str(self.ctx.settings.largest_upload))
        self.set_header("Tus-Checksum-Algorithm", ",".join(CHECKSUMS))
        self.set_status(204)
        self.finish()

    def has_body(self) -> bool:
        """Whether bytes follow the headers (a declared length above 0, or chunked)."""
        headers = self.request.headers
        if "Transfer-Encoding" in headers:
            return True
        return headers.get("Content-Length", "0").strip() not in ("", "0")

    async def data_received(self, chunk: bytes) -> None:
        session = self.session
        if session is None or self._finished:
            return  # a body nobody asked for (a creation without bytes): read and dropped
        metrics.UPLOAD_BYTES.labels("tus").inc(len(chunk))
        try:
            await session.write(chunk)
        except Exception as exc:  # answer now; what arrived before is kept (or rolled back)
            self.session = None
            await session.abandon()
            self.refuse(exc)

    def release_body(self) -> None:
        """The body stalled (408): keep what arrived, let the upload go."""
        session, self.session = self.session, None
        if session is not None:
            tornado.ioloop.IOLoop.current().add_callback(session.abandon)

    def on_connection_close(self) -> None:
        if not self.body_complete:
            self.release_body()
        super().on_connection_close()

    async def finish_session(self) -> TusUpload:
        """The body is in: commit it (and complete the upload if it is whole)."""
        session = self.session
        assert session is not None
        self.body_complete = True
        self.session = None
        upload = await session.finish()
        self.saw(upload)
        return upload

    def describe(self, upload: TusUpload) -> None:
        """The headers a HEAD answers with: offset, length, metadata, concatenation."""
        self.set_header("Cache-Control", "no-store")
        if upload.kind is not TusKind.FINAL or upload.state is not TusState.RECEIVING:
            self.set_header("Upload-Offset", str(upload.offset))
        if upload.length is None:
            self.set_header("Upload-Defer-Length", "1")
        else:
            self.set_header("Upload-Length", str(upload.length))
        if upload.metadata:
            self.set_header("Upload-Metadata", encode_metadata(upload.metadata))
        if upload.kind is TusKind.PARTIAL:
            self.set_header("Upload-Concat", "partial")
        elif upload.kind is TusKind.FINAL:
            urls = " ".join(upload_location(self.base_url, p) for p in upload.concat_of)
            self.set_header("Upload-Concat", f"final;{urls}")

    def no_content(self, status: int = 204) -> None:
        self.clear_header("Content-Type")
        self.set_status(status)
        self.finish()


@tornado.web.stream_request_body
class TusCreateHandler(TusHandler):
    """POST creates an upload (with the first bytes, if the body carries them)."""

    openapi = PathItem(
        f"{TUS}/",
        {
            "options": _discovery("tusOptions"),
            "post": Operation(
                "tusCreate",
                "Create a resumable upload: a pending media (or a partial upload, or a final "
                "one joined from partial uploads); the body may carry the first bytes",
                "tus",
                {
                    201: _answer(
                        "Created; PATCH the bytes to Location (its last segment is the media's id)",
                        Location=Header("The upload", Url, required=True),
                        **{"Upload-Offset": Header("Bytes taken", Count)},
                    ),
                    **_errors(400, 401, 403, 404, 410, 412, 413, 423, 429, 460, 503, 507),
                },
                body=Binary,
                body_media=OFFSET_CONTENT_TYPE,
                body_required=False,
                params=(
                    _RESUMABLE,
                    Param("Upload-Length", "header", str, "The file's size in bytes"),
                    Param(
                        "Upload-Checksum",
                        "header",
                        str,
                        "`sha1|sha256|md5 base64(digest)` of the bytes the body carries",
                    ),
                    Param("Upload-Defer-Length", "header", str, "1: the size comes later"),
                    Param(
                        "Upload-Metadata",
                        "header",
                        str,
                        "Comma-separated `key base64(value)`: filename, entity_type and "
                        "entity_id required; title, description, alt_text, is_primary and "
                        "display_order optional",
                    ),
                    Param(
                        "Upload-Concat",
                        "header",
                        str,
                        "`partial`, or `final;<partial upload URLs>`",
                    ),
                ),
            ),
        },
    )

    created: TusUpload | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "POST":
            return
        principal = self.authenticate()
        headers = self.request.headers
        concat = parse_concat(headers.get("Upload-Concat"), upload_id_of)
        final = concat is not None and concat.final
        length = None
        if not final:
            length = parse_creation_length(
                headers.get("Upload-Length"), headers.get("Upload-Defer-Length")
            )
        metadata = parse_metadata(headers.get("Upload-Metadata"))
        with_body = headers.get("Content-Type") == OFFSET_CONTENT_TYPE and self.has_body()
        checksum = parse_checksum(headers.get("Upload-Checksum")) if with_body else None
        if with_body:
            await self.take_upload_slot()
        created = await self.ctx.tus.create(
            principal, length, metadata, concat, with_body, checksum
        )
        self.created, self.session = created.upload, created.session
        # kept by an error answer too: after a 460 the upload exists, at offset 0
        self.remember("Location", upload_location(self.base_url, created.upload.id))
        self.saw(created.upload)

    async def post(self) -> None:
        upload = self.created
        assert upload is not None
        if self.session is not None:
            upload = await self.finish_session()
            self.set_header("Upload-Offset", str(upload.offset))
        elif upload.kind is TusKind.FINAL:
            self.set_header("Upload-Offset", str(upload.offset))
        self.no_content(201)


@tornado.web.stream_request_body
class TusUploadHandler(TusHandler):
    """HEAD reports the offset, PATCH appends, DELETE terminates."""

    openapi = PathItem(
        f"{TUS}/{{media_id}}",
        {
            "options": _discovery("tusUploadOptions"),
            "head": Operation(
                "tusHead",
                "The upload's offset (where to resume), length, metadata and expiry",
                "tus",
                {
                    200: _answer(
                        "The upload",
                        **{
                            "Upload-Offset": Header("Bytes received", Count),
                            "Upload-Length": Header("The file's size", Count),
                            "Upload-Defer-Length": Header("1 while the size is unknown"),
                            "Upload-Metadata": Header("As sent at creation"),
                            "Upload-Concat": Header("partial, or final;<URLs>"),
                            "Cache-Control": Header("no-store"),
                        },
                    ),
                    **_errors(401, 404, 410, 412, 423, 503),
                },
                params=(_RESUMABLE,),
            ),
            "patch": Operation(
                "tusPatch",
                "Append bytes at Upload-Offset; the last ones complete the media",
                "tus",
                {
                    204: _answer(
                        "Stored durably",
                        **{"Upload-Offset": Header("Bytes received", Count, required=True)},
                    ),
                    **_errors(400, 401, 403, 404, 409, 410, 412, 413, 415, 423, 429, 460, 503, 507),
                },
                body=Binary,
                body_media=OFFSET_CONTENT_TYPE,
                params=(
                    _RESUMABLE,
                    Param("Upload-Offset", "header", Count, "The upload's offset", required=True),
                    Param("Upload-Checksum", "header", str, "`sha1|sha256|md5 base64(digest)`"),
                    Param("Upload-Length", "header", str, "Declares a deferred length"),
                ),
            ),
            "delete": Operation(
                "tusTerminate",
                "Terminate the upload: what it received and its pending media go",
                "tus",
                {204: _answer("Terminated"), **_errors(401, 404, 412, 423, 503)},
                params=(_RESUMABLE,),
            ),
        },
        params=(MEDIA_ID_PARAM,),
    )

    answer: TusUpload | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "PATCH":
            return
        principal = self.authenticate()
        headers = self.request.headers
        if headers.get("Content-Type", "").split(";", 1)[0].strip() != OFFSET_CONTENT_TYPE:
            raise UnsupportedMediaType(f"Content-Type must be {OFFSET_CONTENT_TYPE}")
        offset = parse_integer(headers.get("Upload-Offset"), "Upload-Offset")
        checksum = parse_checksum(headers.get("Upload-Checksum"))
        declared = headers.get("Upload-Length")
        length = None if declared is None else parse_integer(declared, "Upload-Length")
        if self.has_body():
            await self.take_upload_slot()
        began = await self.ctx.tus.begin_append(
            principal, self.path_kwargs["upload_id"], offset, checksum, length, self.saw
        )
        if isinstance(began, AppendSession):
            self.session = began
            await self._refuse_a_body_too_long(began)
        else:
            self.answer = began

    async def _refuse_a_body_too_long(self, session: AppendSession) -> None:
        """A declared body that cannot fit is a 413 before a byte of it is read."""
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > session.room:
            self.session = None
            await session.abandon()
            upload = session.upload
            if upload.length is None:
                raise self.ctx.tus.too_large(upload)
            raise TooLarge(f"The body runs past the upload's length of {upload.length} bytes")

    async def head(self, upload_id: str) -> None:
        upload = await self.ctx.tus.status(self.authenticate(), upload_id)
        self.saw(upload)
        self.describe(upload)
        self.set_status(200)
        self.finish()

    async def patch(self, upload_id: str) -> None:
        upload = await self.finish_session() if self.session is not None else self.answer
        assert upload is not None
        self.set_header("Upload-Offset", str(upload.offset))
        if upload.state is not TusState.RECEIVING:
            self.clear_header("Upload-Expires")
        self.no_content()

    async def delete(self, upload_id: str) -> None:
        await self.ctx.tus.terminate(self.authenticate(), upload_id)
        self.no_content()


routes = [
    (rf"{TUS}/?", TusCreateHandler),
    (rf"{TUS}/(?P<upload_id>[^/]+)/?", TusUploadHandler),
]
