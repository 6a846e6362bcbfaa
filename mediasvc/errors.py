"""Domain errors. Services raise these; one base handler maps them to status codes."""

from __future__ import annotations


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
