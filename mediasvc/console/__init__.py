"""The web console: pages shipped in the package, speaking only the public API.

Its files live in ``static/`` beside this module and are served under a path that carries a
digest of all of them (``/console/static/<version>/app.js``), so they can be cached for a
year and a new release is fetched at once; the page itself (``index.html``) is never cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PACKAGE = Path(__file__).parent
STATIC = PACKAGE / "static"
INDEX = PACKAGE / "index.html"
VERSION_MARK = "{{version}}"
PROBE_KEY = "media/console/0/probe.jpg"
"""A storage key of the usual shape: its URL tells where the blob store serves files from."""


@dataclass(frozen=True)
class ConsoleAssets:
    """The console's page, the folder of its files, and the version their URLs carry."""

    root: Path
    version: str
    index_html: bytes

    @classmethod
    def load(cls, root: Path = STATIC, index: Path = INDEX) -> ConsoleAssets:
        """Read the files once (a few hundred KB, at start-up) and digest them."""
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        version = digest.hexdigest()[:12]
        page = index.read_text(encoding="utf-8").replace(VERSION_MARK, version)
        return cls(root, version, page.encode())


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(page_origin: str, file_url: str, service_url: str) -> str:
    """The console's policy: its own scripts and styles only (no inline code at all), images
    and media from itself, from blobs (previews of files being uploaded) and from where
    stored files are served (`file_url`: an S3 endpoint or CDN, or the service), requests to
    itself, to the origin the service names in its links (`service_url`, from `public_url`)
    and to the file origin; never framed, no <base>, no form posts."""
    files = _others([file_url], page_origin)
    requests = _others([service_url, file_url], page_origin)
    directives = [
        ["default-src 'none'"],
        ["script-src 'self'"],
        ["style-src 'self'"],
        ["img-src 'self' blob: data:", *files],
        ["media-src 'self' blob:", *files],
        ["connect-src 'self'", *requests],
        ["frame-ancestors 'none'"],
        ["base-uri 'none'"],
        ["form-action 'none'"],
    ]
    return "; ".join(" ".join(parts) for parts in directives)


def _others(urls: Iterable[str], page_origin: str) -> list[str]:
    origins = (origin_of(url) for url in urls)
    return list(dict.fromkeys(o for o in origins if o and o != page_origin))
