"""Domain errors. Services raise these; one base handler maps them to status codes."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


class MediaError(Exception):
    """Base of every error a client can cause or be told about; `status` is its HTTP code."""

    status = 400

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class BadRequest(MediaError):
    """The request is malformed or a value is invalid."""

    status = 400


class Unauthorized(MediaError):
    """No valid credentials."""

    status = 401


class Forbidden(MediaError):
    """Valid credentials, but not allowed to do this."""

    status = 403


class NotFound(MediaError):
    """No such thing, or the caller may not know it exists."""

    status = 404


class Conflict(MediaError):
    """The request clashes with the current state."""

    status = 409


class Unprocessable(MediaError):
    """Well formed, but not something that can be done (an idempotency key reused for a
    different request)."""

    status = 422


class RequestTimeout(MediaError):
    """The client stopped sending its request body."""

    status = 408


class TooLarge(MediaError):
    """A body or a file is over its limit."""

    status = 413


class TooManyRequests(MediaError):
    """Over a concurrency limit; try again shortly."""

    status = 429

    def __init__(self, message: str, *, retry_after: int | None = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class Unavailable(MediaError):
    """A dependency (database, storage) cannot be reached right now."""

    status = 503

    def __init__(self, message: str, *, retry_after: int | None = 2) -> None:
        super().__init__(message, retry_after=retry_after)


class InsufficientStorage(MediaError):
    """The disk that takes uploads is full (or over its quota): 507, nothing partial kept."""

    status = 507


@contextmanager
def full_disk_is_507(what: str) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT inside the block into InsufficientStorage; other errors pass."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in FULL_DISK:
            raise
        log.warning("no space left for %s: %s", what, exc)
        raise InsufficientStorage(
            "Not enough storage space for this upload; try again later"
        ) from exc
