"""Files of the local blob store, served under signed, expiring URLs.

Range requests, ETag and Content-Length come from tornado's StaticFileHandler; the
Content-Type comes from the allow-list, never from guessing, and anything a browser could
run (SVG, HTML-ish documents) is sent as an attachment with `nosniff`.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import tornado.web
from msgspec import Meta

from mediasvc.handlers.base import JsonErrorsMixin
from mediasvc.media_types import extension_of, kind_for_extension, served_inline
from mediasvc.models.base import MAX_QUERY_INT, Binary, Error
from mediasvc.openapi import Answer, Header, Operation, Param, PathItem
from mediasvc.storage.local import FILES_PREFIX, LocalBlobStore
from mediasvc.wire import encode

STORAGE_KEY_PARAM = Param("key", "path", str, "The storage key (it contains `/`, sent as is).")
EXPIRES_PARAM = Param(
    "expires",
    "query",
    Annotated[int, Meta(ge=0, le=MAX_QUERY_INT)],
    "Unix time the signed URL expires at",
    required=True,
)
SIGNATURE_PARAM = Param(
    "sig",
    "query",
    Annotated[str, Meta(pattern="^[A-Za-z0-9_\\-]*\\Z")],
    "HMAC-SHA256 signature (base64url)",
    required=True,
)
# The stored type is sent (image/jpeg, ...); octet-stream first, so that generated clients
# read the file as bytes.
_FILE = {"application/octet-stream": Binary, "*/*": {}}
_FILE_HEADERS = {
    "ETag": Header("The file's version", required=True),
    "Cache-Control": Header("How long a client may keep it"),
    "Content-Disposition": Header("attachment, for anything but raster images, audio and video"),
}
_FILE_ANSWERS = {
    200: Answer("The file", headers=_FILE_HEADERS, content=_FILE),
    206: Answer(
        "Part of the file",
        headers={**_FILE_HEADERS, "Content-Range": Header("The part sent", required=True)},
        content=_FILE,
    ),
    304: Answer("Not modified (If-None-Match)"),
    400: Answer("Malformed request (a GET with an unparsable form body)", Error),
    403: Answer("Invalid or expired file URL", Error),
    404: Answer("No such file", Error),
}


class LocalFileHandler(JsonErrorsMixin, tornado.web.StaticFileHandler):
    """GET/HEAD a stored file; a missing or wrong signature is a 403, an unknown key a 404."""

    openapi = PathItem(
        "/files/{key}",
        {
            "get": Operation(
                "getFile",
                "A stored file under a signed, expiring URL (local storage; Range, ETag)",
                "files",
                _FILE_ANSWERS,
                errors=(416,),
                public=True,
            ),
            "head": Operation(
                "headFile",
                "Headers of a stored file",
                "files",
                _FILE_ANSWERS,
                errors=(416,),
                public=True,
            ),
        },
        params=(STORAGE_KEY_PARAM, EXPIRES_PARAM, SIGNATURE_PARAM),
    )

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_cors_headers()

    async def get(self, path: str, include_body: bool = True) -> None:
        self._check_signature(path)
        await super().get(path, include_body)
        if self.get_status() == 416:  # tornado answers an unsatisfiable range with no body
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.write(encode(Error(error="Requested range not satisfiable")))

    def _check_signature(self, key: str) -> None:
        store = self.ctx.blobs
        assert isinstance(store, LocalBlobStore)
        expires = self.get_query_argument("expires", "")
        signature = self.get_query_argument("sig", "")
        if not store.signer.valid(key, expires, signature):
            raise tornado.web.HTTPError(403, "Invalid or expired file URL")

    def get_content_type(self) -> str:
        kind = kind_for_extension(extension_of(self.absolute_path or ""))
        return kind.content_type if kind else "application/octet-stream"

    def set_extra_headers(self, path: str) -> None:
        if not served_inline(self.get_content_type()):
            name = os.path.basename(path)
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("Cache-Control", "private, max-age=300")

    @classmethod
    def get_content_version(cls, abspath: str) -> str:
        # The default hashes the whole file on first access; size and mtime are enough
        # because stored files never change in place (new content gets a new key).
        stat = os.stat(abspath)
        return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"

    def compute_etag(self) -> str | None:
        version = self.get_content_version(self.absolute_path) if self.absolute_path else None
        return f'"{version}"' if version else None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.clear_header("Content-Type")
        super().write_error(status_code, **kwargs)


def routes_for(store: Any) -> list[tuple[str, type, dict[str, Any]]]:
    """The file route, registered only when the local backend is on."""
    if not isinstance(store, LocalBlobStore):
        return []
    return [(rf"{FILES_PREFIX}(.+)", LocalFileHandler, {"path": str(store.root)})]
