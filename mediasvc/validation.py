"""Checks of client-supplied values, shared by uploads, PATCH and bulk_update."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from mediasvc.errors import BadRequest
from mediasvc.settings import Settings

_ENTITY_TYPE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
EDITABLE_FIELDS = ("title", "description", "alt_text", "display_order", "is_primary")
READ_ONLY_FIELDS = frozenset(
    {
        "id",
        "url",
        "thumbnail_url",
        "filename",
        "file_size",
        "content_type",
        "media_type",
        "entity_type",
        "entity_id",
        "status",
        "width",
        "height",
        "view_count",
        "download_count",
        "created_at",
        "updated_at",
        "sha256",
        "error",
        "storage_key",
    }
)


def parse_uuid(value: Any, name: str) -> str:
    """A UUID in canonical lower-case form, or a 400 naming the field."""
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"{name} must be a UUID")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise BadRequest(f"{name} must be a UUID") from None


def maybe_uuid(value: str) -> str | None:
    """A canonical UUID, or None when `value` is not one (path ids: 404, not 400)."""
    try:
        return str(uuid.UUID(value)) if len(value) <= 64 else None
    except ValueError:
        return None


def parse_entity_type(value: Any) -> str:
    """Entity types are short lower-case identifiers (service, practitioner, user, ...)."""
    if not isinstance(value, str) or not _ENTITY_TYPE.fullmatch(value):
        raise BadRequest("entity_type must be a lower-case identifier such as 'service'")
    return value


def parse_form_bool(value: str, name: str) -> bool:
    """A boolean from a form field."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise BadRequest(f"{name} must be true or false")


def json_int(value: Any) -> int | None:
    """An integer from JSON, or None. JSON Schema counts `800.0` as the integer 800 (and
    JavaScript cannot tell them apart), so integral floats count; `0.5` and booleans do not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_form_int(value: str, name: str) -> int:
    """An integer from a form field (`3` or `3.0`, as a client may format a number)."""
    if not re.fullmatch(r"\s*-?[0-9]{1,12}(\.0*)?\s*", value):
        raise BadRequest(f"{name} must be an integer")
    return int(value.strip().split(".", 1)[0])


def metadata_changes(body: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Validate the editable fields of a JSON body; unknown or read-only fields are a 400."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name in READ_ONLY_FIELDS:
            raise BadRequest(f"Field '{name}' is read-only")
        if name not in EDITABLE_FIELDS:
            raise BadRequest(f"Unknown field '{_printable(name)}'")
        changes[name] = check_field(name, value, settings)
    return changes


def check_field(name: str, value: Any, settings: Settings) -> Any:
    """One editable field, typed and within its limit."""
    if name in ("title", "description", "alt_text"):
        limit = int(getattr(settings, f"max_{name}_length"))
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        if len(value) > limit:
            raise BadRequest(f"{name} must be at most {limit} characters")
        if "\x00" in value:
            raise BadRequest(f"{name} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{name} is not valid Unicode") from None
        return value
    if name == "display_order":
        order = json_int(value)
        if order is None:
            raise BadRequest("display_order must be an integer")
        if not 0 <= order <= settings.max_display_order:
            raise BadRequest(f"display_order must be between 0 and {settings.max_display_order}")
        return order
    if name == "is_primary":
        if not isinstance(value, bool):
            raise BadRequest("is_primary must be true or false")
        return value
    raise BadRequest(f"Unknown field '{_printable(name)}'")


def _printable(name: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name)
    return cleaned[:64]
