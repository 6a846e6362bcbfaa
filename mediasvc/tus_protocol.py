"""The tus 1.0.0 resumable upload protocol: its headers, parsed and written, and its statuses.

Nothing here knows about storage or the database; the tus service and handler build on it.
Parsing follows the protocol text (and tusd where the text leaves room): a malformed header
is a 400 naming the header, never a guess.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from mediasvc.errors import BadRequest, MediaError

VERSION = "1.0.0"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
)
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# Checksum algorithms by their protocol names (sha1 is the one the protocol requires).
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"})
_INTEGER = re.compile(r"[0-9]{1,19}")
_METADATA_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_MAX_METADATA_PAIRS = 32


class PreconditionFailed(MediaError):
    """A `Tus-Resumable` version the server does not speak (412, with `Tus-Version`)."""

    status = 412


class Gone(MediaError):
    """An upload that expired (or was rejected) and can no longer be resumed."""

    status = 410


class UnsupportedMediaType(MediaError):
    """A PATCH whose body is not `application/offset+octet-stream`."""

    status = 415


class Locked(MediaError):
    """Another request is appending to this upload right now; try again shortly."""

    status = 423

    def __init__(self, message: str, *, retry_after: int | None = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class ChecksumMismatch(MediaError):
    """The chunk does not match its `Upload-Checksum`; it was discarded."""

    status = 460


REASONS = {460: "Checksum Mismatch"}  # a status Python's http module does not name


@dataclass(frozen=True)
class Checksum:
    """An `Upload-Checksum`: the algorithm's name and the digest the chunk must have."""

    algorithm: str
    digest: bytes

    def hasher(self) -> Any:
        """A fresh hash object of the algorithm."""
        return CHECKSUMS[self.algorithm]()


@dataclass(frozen=True)
class Concat:
    """An `Upload-Concat`: a partial upload, or a final one made of partial upload ids."""

    partial: bool
    parts: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        """A final upload joins `parts`, in order."""
        return not self.partial


def check_version(value: str | None) -> None:
    """412 unless the client speaks the version this server does."""
    if value != VERSION:
        raise PreconditionFailed(f"Tus-Resumable must be {VERSION}")


def parse_integer(value: str | None, header: str) -> int:
    """A non-negative integer header, or a 400 naming it."""
    if value is None or not _INTEGER.fullmatch(value.strip()):
        raise BadRequest(f"{header} must be a non-negative integer")
    return int(value.strip())


def parse_creation_length(length: str | None, defer: str | None) -> int | None:
    """The declared length of a new upload, or None when it is deferred."""
    if length is not None and defer is not None:
        raise BadRequest("Send either Upload-Length or Upload-Defer-Length, not both")
    if defer is not None:
        if defer.strip() != "1":
            raise BadRequest("Upload-Defer-Length must be 1")
        return None
    if length is None:
        raise BadRequest("Upload-Length or Upload-Defer-Length: 1 is required")
    return parse_integer(length, "Upload-Length")


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64value` pairs, as UTF-8 text."""
    if header is None or not header.strip():
        return {}
    pairs = header.split(",")
    if len(pairs) > _MAX_METADATA_PAIRS:
        raise BadRequest(f"Upload-Metadata may carry at most {_MAX_METADATA_PAIRS} pairs")
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, _, encoded = pair.strip().partition(" ")
        if not _METADATA_KEY.fullmatch(key):
            raise BadRequest("Upload-Metadata has an empty or invalid key")
        if key in metadata:
            raise BadRequest(f"Upload-Metadata has the key '{key}' twice")
        metadata[key] = _decode_value(key, encoded.strip())
    return metadata


def _decode_value(key: str, encoded: str) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest(f"Upload-Metadata value of '{key}' is not base64 UTF-8") from None


def encode_metadata(metadata: dict[str, str]) -> str:
    """The `Upload-Metadata` header of `metadata` (HEAD echoes what the client sent)."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
        for key, value in metadata.items()
    )


def parse_checksum(header: str | None) -> Checksum | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; an unknown algorithm is a 400."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Unsupported checksum algorithm; use one of: {', '.join(CHECKSUMS)}")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum digest is not base64") from None
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise BadRequest(f"Upload-Checksum digest has the wrong length for {algorithm}")
    return Checksum(algorithm, digest)


def parse_concat(header: str | None, upload_id: Callable[[str], str | None]) -> Concat | None:
    """`Upload-Concat: partial` or `final;<url> <url> ...` (absolute or relative URLs);
    `upload_id` turns a URL's path into an upload id, or None when it names none."""
    if header is None:
        return None
    value = header.strip()
    if value == "partial":
        return Concat(partial=True)
    if not value.startswith("final;"):
        raise BadRequest("Upload-Concat must be 'partial' or 'final;<upload URLs>'")
    urls = value[len("final;") :].split()
    if not urls:
        raise BadRequest("Upload-Concat final lists no partial uploads")
    parts = []
    for url in urls:
        found = upload_id(urlsplit(url).path)
        if found is None:
            raise BadRequest("Upload-Concat names something that is not an upload URL")
        parts.append(found)
    return Concat(partial=False, parts=tuple(parts))


def http_date(millis: int) -> str:
    """An RFC 9110 date (`Wed, 25 Jun 2014 16:00:00 GMT`) for `Upload-Expires`."""
    return formatdate(millis / 1000, usegmt=True)
