"""Every body the API reads or writes, declared once as msgspec Structs.

Decoding validates a request against its model (mediasvc/wire.py), encoding shapes an answer
from its model, and the OpenAPI document is generated from the same models (mediasvc/openapi.py).
So a field list, a limit or a pattern is written here and nowhere else:

* constraints that never change are msgspec ``Meta`` constraints;
* limits that are settings are marked ``limited_by("maxLength", "max_title_length")``: the
  decoder checks them against the running settings and the document shows the running value;
* ``says(...)`` words a field's problems as the API has always told them (``title must be a
  string``); struct docstrings and ``description`` are what the document tells a client.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from mediasvc.media_types import KINDS, MEDIA_TYPES, MediaType
from mediasvc.pipeline.jobs import OPERATIONS, OperationName
from mediasvc.records import JobState, MediaStatus
from mediasvc.settings import MB, Settings

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
Check = Literal["ok", "timeout", "unavailable", "restarting"]


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


# ---- processing options: asked for, and shown on jobs


class ResizeBox(Shape):
    """A box in pixels; integral numbers such as `800.0` count as integers."""

    says_shape = '{name} must be {{"width": <int>, "height": <int>}}'

    width: ResizeSide
    height: ResizeSide


class ProcessOptions(Shape):
    """Options of processing operations."""

    resize: ResizeBox | UnsetType = UNSET


# ---- answers: media, variants, jobs, pages


class Variant(Shape):
    """A derived file: thumbnail, optimized copy, webp, resized copy."""

    name: Annotated[str, Meta(examples=["thumbnail", "optimized", "webp"])]
    url: Url
    content_type: str
    width: Count | None
    height: Count | None
    size: Count


class Job(Shape):
    """The latest processing job of a media."""

    id: UuidText
    operations: list[OperationName]
    options: ProcessOptions
    state: JobState
    attempts: int
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    duration_ms: Count | None


class Media(Shape):
    """A media record as the API shows it."""

    id: UuidText
    url: Annotated[Url, Meta(description="The file (local storage: a signed, expiring URL)")]
    thumbnail_url: Url | None
    filename: str
    file_size: Count
    content_type: CanonicalContentType
    media_type: MediaType
    entity_type: Annotated[str, Meta(pattern=f"^{ENTITY_TYPE}\\Z")]
    entity_id: UuidText
    title: str
    description: str
    alt_text: str
    status: MediaStatus
    error: Annotated[str | None, Meta(description="Why it failed")]
    width: Count | None
    height: Count | None
    is_primary: bool
    display_order: int
    view_count: Count
    download_count: Count
    duration: Annotated[Annotated[float, Meta(ge=0)] | None, Meta(description="seconds")]
    bitrate: Annotated[Count | None, Meta(description="bits per second")]
    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}\\Z")] | None
    variants: list[Variant]
    job: Job | None
    created_at: Timestamp
    updated_at: Timestamp
    upload_offset: (
        Annotated[
            Count, Meta(description="Resumable (tus) uploads only: the bytes received so far")
        ]
        | UnsetType
    ) = UNSET  # left out of the answer when unset


class MediaList(Shape):
    """A page of media; `next` and `previous` keep the filters."""

    count: Count
    next: Url | None
    previous: Url | None
    results: list[Media]


# ---- requests that change media


class MediaChanges(Shape):
    """Metadata changed on every media a bulk update names."""

    shown_as = Media
    refused = {"is_primary": "is_primary cannot be bulk-updated; use set_primary"}
    names_alone = True

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    alt_text: AltText | UnsetType = UNSET
    display_order: DisplayOrder | UnsetType = UNSET


class MediaUpdate(MediaChanges):
    """A PATCH: read-only or unknown fields are a 400."""

    refused = {}

    is_primary: Annotated[bool, Meta(description="true moves the primary mark")] | UnsetType = UNSET


Operations = Annotated[
    list[OperationName],
    Meta(min_length=1),
    says(
        f"{{name}} must be a non-empty list of: {', '.join(OPERATIONS)}",
        item="Unknown operation '{value:.32}'",
        missing=f"{{name}} must be a non-empty list of: {', '.join(OPERATIONS)}",
    ),
]


class ProcessRequest(Shape):
    """`options.resize` is the box (fit inside, never upscaled) of the `resize` operation, which
    requires it. With `optimize` and no `resize` operation (the spec's example: `thumbnail`,
    `optimize` and a box), the optimized copy fits inside the box. Any other use of
    `options.resize` is a 400. Videos and images take every operation; audio and PDF only
    `thumbnail`; other documents none (400)."""

    operations: Operations
    options: ProcessOptions = field(default_factory=ProcessOptions)

    @classmethod
    def extra_schema(cls, settings: Settings) -> Schema:
        """Which operations need or take the box (msgspec has no conditional schemas)."""
        has = {"contains": {"const": "resize"}}
        return {
            "if": {"properties": {"operations": has}, "required": ["operations"]},
            "then": {"properties": {"options": {"required": ["resize"]}}, "required": ["options"]},
            "else": {
                "anyOf": [
                    {"properties": {"operations": {"contains": {"const": "optimize"}}}},
                    {"properties": {"options": {"not": {"required": ["resize"]}}}},
                ]
            },
        }


BulkIds = Annotated[
    list[str],
    Meta(min_length=1, description="Media ids; unknown or invisible ones are listed in `failed`."),
    limited_by("maxItems", "max_bulk_ids"),
    says("{name} must be a non-empty list of UUIDs", high="{name} may name at most {limit} media"),
]


class BulkDeleteRequest(Shape):
    """Media to delete."""

    media_ids: BulkIds


class BulkUpdateRequest(Shape):
    """Media to change, and the changes (not is_primary: one media per entity is primary)."""

    media_ids: BulkIds
    updates: Annotated[
        MediaChanges,
        documented(minProperties=1),
        Meta(extra={"non_empty": True}),
        says("{name} must be a non-empty object"),
    ]


class BulkFailure(Shape):
    """A media a bulk request could not change, and why."""

    id: str
    error: str


class BulkDeleteResult(Shape):
    """How many media went, and which could not."""

    deleted: Count
    failed: list[BulkFailure]


class BulkUpdateResult(Shape):
    """How many media changed, and which could not."""

    updated: Count
    failed: list[BulkFailure]


# ---- uploads


class EntityRef(Shape):
    """The entity media belong to."""

    entity_type: EntityType
    entity_id: Uuid


class UploadFields(EntityRef):
    """The fields of an upload besides its file (forms, tus metadata)."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    alt_text: AltText | UnsetType = UNSET
    is_primary: Annotated[bool, Meta(description="Also 1/0, yes/no, on/off; empty is false")] = (
        False
    )
    display_order: DisplayOrder | UnsetType = UNSET


class UploadForm(UploadFields, kw_only=True):
    """Fields in any order. The file's extension and sniffed content must be allowed; its size
    within its media type's limit (else 413)."""

    file: Binary


class TusMetadata(UploadFields, kw_only=True):
    """The Upload-Metadata of a tus creation: an upload's fields and its file's name."""

    filename: Annotated[
        Filename,
        says(
            "Upload-Metadata must carry the filename",
            missing="Upload-Metadata must carry the filename",
            high="{name} must be at most {limit} characters",
        ),
    ]


class BatchUploadForm(EntityRef):
    """`files` repeated; each file is checked and stored on its own (at most
    {max_batch_files}: `max_batch_files`)."""

    files: Annotated[list[Binary], Meta(min_length=1), limited_by("maxItems", "max_batch_files")]


class BatchCreated(Shape):
    """One media a batch created."""

    id: UuidText
    filename: str
    status: MediaStatus


class BatchError(Shape):
    """One file of a batch that was refused, and why."""

    filename: str
    error: str


class BatchSummary(Shape):
    """The counts of a batch."""

    total: Count
    successful: Count
    failed: Count


class BatchResult(Shape):
    """What a batch upload made of each file."""

    created: list[BatchCreated]
    errors: list[BatchError]
    summary: BatchSummary


class BatchFailure(BatchResult, kw_only=True):
    """No file of the batch could be stored: the reasons, per file."""

    error: str


class PresignedUploadRequest(EntityRef, kw_only=True):
    """The extension of `filename` decides the rest: `content_type` must be one its row lists
    (else 400) and `file_size` within its media type's limit (else 413). An integral
    `file_size` such as `2048.0` counts as an integer."""

    filename: Filename
    content_type: UploadContentType
    file_size: Annotated[
        int,
        Meta(ge=1),
        limited_by("maximum", "largest_upload", checked=False),  # 413 per media type
        says("{name} must be a positive integer"),
    ]
    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    alt_text: AltText | UnsetType = UNSET

    @classmethod
    def extra_schema(cls, settings: Settings) -> Schema:
        """The per-extension rules, as a table (one schema branch per extension group
        defeats client generators), with this server's size limits."""
        groups: dict[tuple[str, frozenset[str]], list[str]] = {}
        for kind in KINDS.values():
            groups.setdefault((kind.media_type, kind.sniffed), []).append(kind.extension)
        rows = [
            f"| {', '.join(extensions)} | {media_type} "
            f"| {', '.join(sorted(t for t in types if t == t.lower()))} "
            f"| {settings.size_limit(media_type) / MB:g} MB |"
            for (media_type, types), extensions in groups.items()
        ]
        header = "| extensions | media type | content_type | file_size at most |"
        table = "\n".join([header, "| --- | --- | --- | --- |", *rows])
        any_case = "|".join("".join(f"[{c}{c.upper()}]" for c in ext) for ext in KINDS)
        return {
            "description": f"{inspect.cleandoc(cls.__doc__ or '')}\n\n{table}",
            "properties": {"filename": {"pattern": f"\\.({any_case})$"}},
        }


class PresignedUpload(Shape):
    """PUT the bytes to `upload_url` with `upload_headers`, then confirm the upload."""

    upload_url: Url
    upload_headers: Annotated[
        dict[str, str],
        documented(properties={"Content-Type": {"type": "string"}}, required=["Content-Type"]),
    ]
    media_id: UuidText
    storage_key: str
    expires_at: Timestamp


class LocalUploadResult(Shape):
    """The bytes of a presigned upload are stored; now confirm it."""

    storage_key: str
    size: Count


# ---- lists


_RANGE = "{name} is out of range"


class ListParams(Struct, kw_only=True):
    """The filters and the page of a list (query parameters; unknown ones are ignored)."""

    entity_type: EntityType | UnsetType = UNSET
    entity_id: Uuid | UnsetType = UNSET
    media_type: Annotated[MediaType, says(f"{{name}} must be one of: {', '.join(MEDIA_TYPES)}")] | (
        UnsetType
    ) = UNSET
    status: MediaStatus | UnsetType = UNSET
    search: Annotated[
        str,
        Meta(
            pattern=NO_CONTROL,
            description="Literal, case-insensitive, over filename, title and description",
            extra={"strip": True},
        ),
        limited_by("maxLength", "max_search_length"),
        says(
            "{name} must be a string",
            pattern="{name} must not contain control characters",
            high="{name} must be at most {limit} characters",
        ),
    ] = ""
    limit: (
        Annotated[
            int,
            Meta(
                ge=1, le=MAX_QUERY_INT, description="Page size; above {max_page_size} it is clamped"
            ),
            limited_by("default", "default_page_size", checked=False),
            says("{name} must be an integer", low="{name} must be a positive integer", high=_RANGE),
        ]
        | UnsetType
    ) = UNSET
    offset: Annotated[
        int,
        Meta(
            ge=0,
            le=MAX_QUERY_INT,
            description="Skip this many; a client that pages by offset gets offset links",
        ),
        says("{name} must be an integer", low="{name} must not be negative", high=_RANGE),
    ] = 0
    cursor: Annotated[
        str,
        Meta(
            max_length=200,
            description="An opaque position from a `next` or `previous` link: as fast on any "
            "page as on the first (links carry one unless the request used `offset`)",
        ),
        says("{name} is not valid"),
    ] = ""


# ---- errors and operations


class Error(Shape):
    """Every error answer."""

    error: str


class Health(Shape):
    """The process answers."""

    status: Literal["ok"]


class ReadinessChecks(Shape):
    """What each dependency answered."""

    database: Check
    storage: Check


class Readiness(Shape):
    """The database and the storage answer."""

    status: Literal["ready"]
    checks: ReadinessChecks


class NotReady(Shape):
    """A dependency does not answer."""

    error: str
    checks: ReadinessChecks
