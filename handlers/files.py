"""Files of the local blob store, served under signed, expiring URLs.

Range requests, ETag and Content-Length come from tornado's StaticFileHandler; the
Content-Type comes from the allow-list, never from guessing, and anything a browser could
run (SVG, HTML-ish documents) is sent as an attachment with `nosniff`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import tornado.web

from mediasvc.handlers.base import JsonErrorsMixin
from mediasvc.media_types import extension_of, kind_for_extension, served_inline
from mediasvc.storage.local import FILES_PREFIX, LocalBlobStore


class LocalFileHandler(JsonErrorsMixin, tornado.web.StaticFileHandler):
    """GET/HEAD a stored file; a missing or wrong signature is a 403, an unknown key a 404."""

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_cors_headers()

    async def get(self, path: str, include_body: bool = True) -> None:
        self._check_signature(path)
        await super().get(path, include_body)
        if self.get_status() == 416:  # tornado answers an unsatisfiable range with no body
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.write(json.dumps({"error": "Requested range not satisfiable"}))

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
