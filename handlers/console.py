"""The web console: `/` leads to it, `/console/` is its page, `/console/static/<version>/`
its files, and `/console/api/operations` the overview its operations page shows admins.

The page carries a strict Content-Security-Policy (no inline script or style anywhere) and
is never cached; the files' URLs carry a digest of them all, so they are cached for a year.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from mediasvc.console import PROBE_KEY, ConsoleAssets, content_security_policy
from mediasvc.console.operations import OperationsOverview
from mediasvc.errors import Forbidden
from mediasvc.handlers.base import BaseHandler, JsonErrorsMixin
from mediasvc.wire import encode

CONSOLE = "/console"
YEAR = 365 * 24 * 3600


def page_headers(handler: tornado.web.RequestHandler) -> None:
    """What every console answer says about itself: not to be sniffed, framed or referred."""
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("Referrer-Policy", "no-referrer")


class ConsoleRedirectHandler(BaseHandler):
    """GET / and /console: to the console's page (the fragment, a token, goes along)."""

    async def get(self) -> None:
        self.redirect(f"{CONSOLE}/", status=302)

    async def head(self) -> None:
        await self.get()


class ConsolePageHandler(BaseHandler):
    """GET /console/: the page, with its policy; never cached (it names the files' version)."""

    def initialize(self, assets: ConsoleAssets) -> None:
        self.assets = assets

    async def get(self) -> None:
        self._headers_of_page()
        self.finish(self.assets.index_html)

    async def head(self) -> None:
        self._headers_of_page()
        self.set_header("Content-Length", str(len(self.assets.index_html)))
        self.finish()

    def _headers_of_page(self) -> None:
        page_origin = f"{self.request.protocol}://{self.request.host}"
        file_url = self.ctx.blobs.url(PROBE_KEY, self.base_url)
        policy = content_security_policy(page_origin, file_url, self.base_url)
        self.set_header("Content-Security-Policy", policy)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        page_headers(self)


class ConsoleAssetHandler(JsonErrorsMixin, tornado.web.StaticFileHandler):
    """GET a file of the console. Under the current version it is immutable; under another
    (a page from before an upgrade) it is the current file, to be checked each time."""

    _current = False

    version = ""

    def initialize(
        self,
        path: str,
        default_filename: str | None = None,
        allowed_symlink_directory: str | list[str] | None = None,
        version: str = "",
    ) -> None:
        super().initialize(path, default_filename, allowed_symlink_directory)
        self.version = version

    async def prepare(self) -> None:
        self.answer_preflight()
        version = self.request.path.split("/")[3]  # /console/static/<version>/<file>
        self._current = version == self.version

    def set_default_headers(self) -> None:
        self.set_header("X-Request-Id", self.request_id)
        self.set_cors_headers()
        page_headers(self)

    def set_extra_headers(self, path: str) -> None:
        if self._current:
            self.set_header("Cache-Control", f"public, max-age={YEAR}, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 0  # Cache-Control is set above; no Expires header

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.clear_header("Content-Type")
        super().write_error(status_code, **kwargs)


class OperationsHandler(BaseHandler):
    """GET the job queue, busy workers and health (admins only): the operations page."""

    async def get(self) -> None:
        if not self.authenticate().is_admin:
            raise Forbidden("The operations overview is for admins only")
        ctx = self.ctx
        overview = OperationsOverview(ctx.repository, ctx.blobs, ctx.settings, ctx.embedded_db)
        self.finish(encode(await overview.snapshot(self.base_url)))


def routes() -> list[Any]:
    """The console's routes, with its files read once (at start-up)."""
    assets = ConsoleAssets.load()
    return [
        (r"/", ConsoleRedirectHandler),
        (rf"{CONSOLE}", ConsoleRedirectHandler),
        (rf"{CONSOLE}/", ConsolePageHandler, {"assets": assets}),
        (
            rf"{CONSOLE}/static/[0-9a-f]{{1,64}}/(.+)",
            ConsoleAssetHandler,
            {"path": str(assets.root), "version": assets.version},
        ),
        (rf"{CONSOLE}/api/operations", OperationsHandler),
    ]
