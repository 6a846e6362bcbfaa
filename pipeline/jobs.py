"""Processing jobs as records: what each media type needs, and the queued job document.

Jobs live in MongoDB (the ``jobs`` collection) so they survive a crash of the process that
queued them; a dispatcher claims them with a lease and runs them in a process pool.
"""

from __future__ import annotations

import uuid
from typing import Any

OPERATIONS = ("thumbnail", "optimize", "resize")


def default_operations(media_type: str, content_type: str) -> list[str]:
    """What an upload of this type gets without being asked; empty: nothing applies."""
    if media_type in ("image", "video"):
        return ["thumbnail", "optimize"]
    if media_type == "audio":
        return ["thumbnail"]  # a waveform image
    if content_type == "application/pdf":
        return ["thumbnail"]  # a first-page preview
    return []


def new_job(
    media_id: str, operations: list[str], now: int, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A queued job document for `media_id`."""
    return {
        "_id": str(uuid.uuid4()),
        "media_id": media_id,
        "operations": operations,
        "options": options or {},
        "state": "queued",
        "attempts": 0,
        "error": None,
        "created_at": now,
        "updated_at": now,
        "lease_expires_at": None,
    }
