"""CORS for browser apps on other origins: one policy built from the settings, one mixin.

The API authenticates with a bearer header, never with cookies, so a browser needs no
credentials mode: `Access-Control-Allow-Credentials` is never sent (with `*` it would be
wrong, and with listed origins it would only widen what a page may do).

A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) carries no
`Authorization`, so it is answered before the method check, the URL signature and the
token: 204 with the allow headers for an allowed origin, a JSON 403 without any
`Access-Control-*` header for any other (the browser then blocks the request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import tornado.web

from mediasvc.errors import Forbidden

if TYPE_CHECKING:
    from mediasvc.settings import Settings

    _HandlerBase = tornado.web.RequestHandler
else:
    _HandlerBase = object

# What the API's clients send beyond the CORS-safelisted headers: auth, JSON bodies,
# idempotency, request ids, ranges, and the tus 1.0 protocol headers.
ALLOW_HEADERS = (
    "Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id", "Range", "If-Match",
    "If-None-Match", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Checksum",
    "Upload-Concat", "Upload-Defer-Length", "Tus-Resumable", "X-HTTP-Method-Override",
)  # fmt: skip
# What a page may read from an answer beyond the safelisted response headers (a replayed
# answer to an Idempotency-Key says so in Idempotent-Replayed).
EXPOSE_HEADERS = (
    "X-Request-Id", "Retry-After", "Location", "ETag", "Content-Length", "Content-Range",
    "Content-Disposition", "Accept-Ranges", "WWW-Authenticate", "Allow", "Idempotent-Replayed",
    "Upload-Offset", "Upload-Length", "Upload-Expires", "Upload-Metadata", "Upload-Defer-Length",
    "Upload-Concat", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
)  # fmt: skip


@dataclass(frozen=True)
class CorsPolicy:
    """Which origins may call the API from a browser, and how long preflights are cached."""

    origins: frozenset[str] = frozenset()
    any_origin: bool = False
    max_age: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> CorsPolicy:
        """`cors_origins` (origins or `*`; empty: CORS off) and `cors_max_age`."""
        listed = frozenset(settings.cors_origins)
        return cls(listed - {"*"}, "*" in listed, settings.cors_max_age)

    @property
    def enabled(self) -> bool:
        """Off (the default): no CORS header on any answer."""
        return self.any_origin or bool(self.origins)

    def allows(self, origin: str | None) -> bool:
        """True if a page on `origin` may read the API's answers."""
        return bool(origin) and (self.any_origin or origin in self.origins)

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """Headers of an actual (non-preflight) answer, errors included."""
        if not self.enabled:
            return {}
        headers = {"Vary": "Origin"}
        if origin and self.allows(origin):
            headers["Access-Control-Allow-Origin"] = "*" if self.any_origin else origin
            headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSE_HEADERS)
        return headers

    def preflight_headers(self, origin: str, methods: list[str]) -> dict[str, str]:
        """Headers of the answer to an allowed origin's preflight for a route with `methods`."""
        return {
            "Vary": "Origin",
            "Access-Control-Allow-Origin": "*" if self.any_origin else origin,
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
            "Access-Control-Max-Age": str(self.max_age),
        }


class CorsMixin(_HandlerBase):
    """CORS headers on every answer and preflights answered before anything else.

    Handlers whose `prepare` is their own call `answer_preflight()` first thing
    (BaseHandler does it in `check_method`).
    """

    @property
    def cors_policy(self) -> CorsPolicy:
        """The policy of this application, built once from the settings."""
        policy: CorsPolicy = self.application.settings["cors"]
        return policy

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements (overridden by the JSON error mixin)."""
        return ["GET", "HEAD"]

    def set_cors_headers(self) -> None:
        """Allow an allowed origin to read this answer (called from set_default_headers)."""
        origin = self.request.headers.get("Origin")
        for name, value in self.cors_policy.response_headers(origin).items():
            self.set_header(name, value)

    def is_preflight(self) -> bool:
        """OPTIONS with Origin and Access-Control-Request-Method: a browser asking first."""
        headers = self.request.headers
        return (
            self.request.method == "OPTIONS"
            and "Origin" in headers
            and "Access-Control-Request-Method" in headers
        )

    def answer_preflight(self) -> None:
        """End a preflight here: 204 with allow headers, or 403 for an origin not allowed."""
        if not self.is_preflight():
            return
        origin = self.request.headers["Origin"]
        policy = self.cors_policy
        if not policy.allows(origin):
            raise Forbidden("Cross-origin requests from this origin are not allowed")
        methods = [m for m in self.allowed_methods() if m != "OPTIONS"]
        for name, value in policy.preflight_headers(origin, methods).items():
            self.set_header(name, value)
        self.clear_header("Access-Control-Expose-Headers")
        self.set_status(204)
        raise tornado.web.Finish()

    async def prepare(self) -> None:
        """Handlers without a `prepare` of their own (the file routes) answer preflights here."""
        self.answer_preflight()
