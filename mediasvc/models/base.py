"""What every wire model is built from: wording, limits that are settings, shared types.

See mediasvc/models/__init__.py for how the models are used.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from msgspec import UNSET, Meta, Struct

from mediasvc.media_types import KINDS
from mediasvc.settings import Settings

Schema = dict[str, Any]

# Patterns end with `\Z`: msgspec checks them with Python's `re`, whose `$` also matches before
# a final newline; the document shows them with JSON Schema's `$` (mediasvc/openapi.py).
ENTITY_TYPE = r"[a-z][a-z0-9_\-]{0,63}"  # also the entity part of a grant (mediasvc/auth.py)
NO_NUL = "^[^\\u0000]*\\Z"
NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\Z"
NOT_BLANK = "\\S"
MAX_QUERY_INT = 999_999_999_999  # integers of forms and queries have at most 12 digits


@dataclass(frozen=True)
class Says:
    """How the problems of one field are told: `{name}` is the field, `{limit}` its limit,
    `{value}` what was sent. Unset kinds fall back to `invalid`."""

    invalid: str
    pattern: str | None = None  # does not match the pattern
    low: str | None = None  # under a minimum (or too short)
    high: str | None = None  # over a maximum (or too long)
    item: str | None = None  # one item of a list is wrong
    missing: str | None = None  # absent though required (default: "{name} is required")


def says(invalid: str, **others: str) -> Meta:
    """The wording of a field's problems (see `Says`)."""
    return Meta(extra={"says": Says(invalid, **others)})


def limited_by(keyword: str, setting: str, *, checked: bool = True) -> Meta:
    """A limit that is a setting: `keyword` (maxLength, maxItems, maximum, default) takes the
    value of `setting`. Unchecked ones are enforced elsewhere, with an answer of their own."""
    return Meta(extra_json_schema={"x-setting": {keyword: setting}}, extra={"checked": checked})


def documented(**schema: Any) -> Meta:
    """JSON Schema the document shows but msgspec does not check (formats, choices)."""
    return Meta(extra_json_schema=schema)


def given(body: Struct, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The fields of `body` (or those of `names`) that were sent, by name."""
    names = body.__struct_fields__ if names is None else names
    return {name: getattr(body, name) for name in names if getattr(body, name) is not UNSET}


TEXTS = ("title", "description", "alt_text")


class Binary:
    """A file part of a multipart form: documented, never decoded from JSON."""


# ---- shared constrained types

EntityType = Annotated[
    str,
    Meta(pattern=f"^{ENTITY_TYPE}\\Z", description="service, practitioner, user, ..."),
    says("{name} must be a lower-case identifier such as 'service'"),
]
Uuid = Annotated[uuid.UUID, says("{name} must be a UUID")]
UuidText = Annotated[str, documented(format="uuid")]
Url = Annotated[str, documented(format="uri")]
Timestamp = Annotated[str, documented(format="date-time")]
Count = Annotated[int, Meta(ge=0)]
Text = Annotated[
    str,
    Meta(pattern=NO_NUL),
    says(
        "{name} must be a string",
        pattern="{name} must not contain NUL characters",
        high="{name} must be at most {limit} characters",
    ),
]
Title = Annotated[Text, limited_by("maxLength", "max_title_length")]
Description = Annotated[Text, limited_by("maxLength", "max_description_length")]
AltText = Annotated[Text, limited_by("maxLength", "max_alt_text_length")]
_BETWEEN = "{name} must be between 0 and {limit}"
DisplayOrder = Annotated[
    int,
    Meta(ge=0),
    limited_by("maximum", "max_display_order"),
    says("{name} must be an integer", low=_BETWEEN, high=_BETWEEN),
]
ResizeSide = Annotated[
    int,
    Meta(ge=1),
    limited_by("maximum", "max_resize_dimension"),
    says("{name} must be an integer from 1 to {limit}"),
]
CanonicalContentType = Annotated[
    str, documented(enum=sorted({kind.content_type for kind in KINDS.values()}))
]
UploadContentType = Annotated[
    str,
    Meta(max_length=255, pattern=NOT_BLANK),
    documented(enum=sorted({t for k in KINDS.values() for t in k.sniffed if t == t.lower()})),
    says("{name} is required", high="{name} must be at most {limit} characters"),
]
Filename = Annotated[
    str,
    Meta(min_length=1, max_length=1024, pattern=NOT_BLANK),
    says("{name} is required", high="{name} must be at most {limit} characters"),
]

IdempotencyKeyText = Annotated[
    str,
    Meta(min_length=1, pattern="^[\\x20-\\x7e]+\\Z"),
    limited_by("maxLength", "idempotency_key_max_length"),
]
Sha256 = Annotated[
    str,
    Meta(pattern="^[0-9a-fA-F]{64}\\Z", description="The file's sha256, 64 hex digits"),
    says("{name} must be a sha256: 64 hexadecimal digits"),
]


class Shape(Struct, forbid_unknown_fields=True):
    """Every body: closed (unknown fields are refused)."""

    # A field of `shown_as` that this body lacks is read-only (PATCH {"job": ...}).
    shown_as: ClassVar[type[Struct] | None] = None
    # Answers for fields this body refuses for a reason of their own.
    refused: ClassVar[dict[str, str]] = {}
    # Its fields are named alone in messages ("title", not "updates.title").
    names_alone: ClassVar[bool] = False
    # How a wrong shape of this body is told (not an object, a field missing or unknown).
    says_shape: ClassVar[str | None] = None

    @classmethod
    def extra_schema(cls, settings: Settings) -> Schema:
        """What the document adds to this model's schema (what msgspec cannot express)."""
        return {}


class Error(Shape):
    """Every error answer."""

    error: str
