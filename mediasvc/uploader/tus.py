"""The tus 1.0 requests the uploader makes, and what their answers mean for it: a value, a
reason to try again (`Retryable`), or a final refusal (`Refused`)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import urljoin

from mediasvc.uploader.http import Connections, Dropped, FileRegion, Reply

VERSION = "1.0.0"
API = "/api/v1/drf/media"
TUS = f"{API}/tus/"
OCTETS = "application/offset+octet-stream"
HASH_BLOCK = 1024 * 1024
# Answers that say "not now": locked by another request, too many uploads, the server or its
# database briefly away, a proxy that lost the server.
TRANSIENT = frozenset({423, 429, 500, 502, 503, 504})


class Retryable(Exception):
    """Worth another try, after `retry_after` seconds if the server said so."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Refused(Exception):
    """A final answer about this file (400, 403, 413, ...): trying again would not help."""

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(reason)
        self.status = status


class Gone(Refused):
    """The server no longer has the upload (404, or 410: expired or rejected)."""


@dataclass(frozen=True)
class Discovery:
    """What the server's OPTIONS says it does."""

    extensions: frozenset[str]
    checksums: frozenset[str]
    max_size: int | None


@dataclass(frozen=True)
class Created:
    """A new upload: its URL, the media's id (the URL's last segment), when it expires."""

    url: str
    media_id: str
    expires_at: float | None


class TusClient:
    """The requests of one worker thread to one service, with its token."""

    def __init__(
        self, server: str, token: str, connections: Connections, checksum: str | None
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.connections = connections
        self.checksum = checksum

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = {"Tus-Resumable": VERSION, "Authorization": f"Bearer {self.token}"}
        headers.update({name.replace("_", "-"): value for name, value in extra.items()})
        return headers

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> Reply:
        try:
            reply = self.connections.request(method, url, headers, **kwargs)
        except Dropped as exc:
            raise Retryable(f"connection lost ({exc})") from None
        if reply.status in TRANSIENT:
            raise Retryable(f"{reply.status}: {reply.message}", retry_after_of(reply))
        return reply

    def discover(self) -> Discovery:
        """OPTIONS: is there a tus server, and which extensions and checksums does it have."""
        reply = self._send("OPTIONS", f"{self.server}{TUS}", {"Tus-Resumable": VERSION})
        if reply.status not in (200, 204) or reply.header("Tus-Version") is None:
            raise Refused(f"no tus endpoint at {self.server}{TUS} (HTTP {reply.status})")
        size = reply.header("Tus-Max-Size")
        return Discovery(
            _names(reply.header("Tus-Extension")),
            _names(reply.header("Tus-Checksum-Algorithm")),
            int(size) if size and size.isdigit() else None,
        )

    def create(self, length: int, metadata: dict[str, str]) -> Created:
        """POST a new upload of `length` bytes: its absolute URL (ending with the media id)."""
        headers = self._headers(Upload_Length=str(length), Upload_Metadata=encode(metadata))
        reply = self._send("POST", f"{self.server}{TUS}", headers, body=b"")
        location = reply.header("Location")
        if reply.status != 201 or not location:
            raise Refused(reply.message, reply.status)
        url = urljoin(f"{self.server}{TUS}", location)
        return Created(url, media_id_of(url), epoch_of(reply.header("Upload-Expires")))

    def offset(self, url: str) -> int:
        """HEAD: how many bytes the server has (Gone when it no longer has the upload)."""
        reply = self._send("HEAD", url, self._headers())
        if reply.status in (404, 410):
            raise Gone(_gone_text(reply), reply.status)
        offset = reply.header("Upload-Offset")
        if reply.status != 200 or offset is None or not offset.isdigit():
            raise Refused(f"HEAD of the upload answered {reply.status}", reply.status)
        return int(offset)

    def append(
        self,
        url: str,
        region: FileRegion,
        sent: Callable[[int], None],
        digest: bytes | None = None,
    ) -> int:
        """PATCH a region of the file at its offset, checksummed (with `digest` when it is
        known already); the server's new offset."""
        extra = {"Upload_Offset": str(region.offset), "Content_Type": OCTETS}
        if self.checksum is not None:
            if digest is None:
                digest = region_digest(region.file, region.offset, region.length, self.checksum)
            extra["Upload_Checksum"] = f"{self.checksum} {base64.b64encode(digest).decode()}"
        reply = self._send("PATCH", url, self._headers(**extra), body=region, sent=sent)
        if reply.status == 204 and (reply.header("Upload-Offset") or "").isdigit():
            return int(reply.header("Upload-Offset") or 0)
        if reply.status in (409, 460):  # we and the server disagree on the offset, or a
            raise Retryable(f"{reply.status}: {reply.message}")  # chunk got damaged: resync
        if reply.status in (404, 410):
            raise Gone(reply.message, reply.status)
        raise Refused(reply.message, reply.status)

    def media(self, media_id: str) -> dict[str, Any]:
        """GET the media record (its status, its error)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        reply = self._send("GET", f"{self.server}{API}/{media_id}/", headers)
        if reply.status != 200:
            raise Refused(reply.message, reply.status)
        record: dict[str, Any] = json.loads(reply.body)
        return record


def media_id_of(url: str) -> str:
    """The media's id: the upload URL's last segment (the service makes them the same)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def encode(metadata: dict[str, str]) -> str:
    """`Upload-Metadata`: `key base64(value)` pairs."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in metadata.items()
    )


def region_digest(file: BinaryIO, offset: int, length: int, algorithm: str) -> bytes:
    """The digest of a file region, read with pread (no seek: the sender's position is its own)."""
    hasher = hashlib.new(algorithm)
    fd, position, end = file.fileno(), offset, offset + length
    while position < end:
        block = os.pread(fd, min(HASH_BLOCK, end - position), position)
        if not block:
            raise Retryable("the file became shorter while it was being read")
        hasher.update(block)
        position += len(block)
    return hasher.digest()


class ChunkDigests:
    """The checksums of one file's chunks, the next one computed in a thread of its own while
    the current chunk is on its way: a PATCH's header needs its digest before its first byte,
    and the link would otherwise idle while 50 MB are hashed."""

    def __init__(self, file: BinaryIO, algorithm: str | None) -> None:
        self.file = file
        self.algorithm = algorithm
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, int, Future[bytes]] | None = None

    def __enter__(self) -> ChunkDigests:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def of(self, offset: int, length: int) -> bytes | None:
        """The digest of a chunk (None without a checksum): the one computed ahead if it is
        this chunk, else computed now."""
        if self.algorithm is None:
            return None
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (offset, length):
            return ahead[2].result()
        return region_digest(self.file, offset, length, self.algorithm)

    def prepare(self, offset: int, length: int) -> None:
        """Start on the digest of the chunk that comes next."""
        if self.algorithm is None or length <= 0:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="digest")
        args = (self.file, offset, length, self.algorithm)
        self._ahead = (offset, length, self._pool.submit(region_digest, *args))


def retry_after_of(reply: Reply) -> float | None:
    """`Retry-After` in seconds (a number or an HTTP date), or None."""
    value = (reply.header("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    when = epoch_of(value)
    return None if when is None else max(0.0, when - time.time())


def epoch_of(date: str | None) -> float | None:
    """An HTTP date (`Upload-Expires`, `Retry-After`) as a Unix time, or None."""
    if not date:
        return None
    try:
        return parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None


def _names(header: str | None) -> frozenset[str]:
    return frozenset(name.strip() for name in (header or "").split(",") if name.strip())


def _gone_text(reply: Reply) -> str:
    return "the upload expired or was rejected" if reply.status == 410 else "upload not found"
