"""Media as the API shows them, the requests that change them, and list parameters."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType, field

from mediasvc.media_types import MEDIA_TYPES, MediaType
from mediasvc.models.base import (
    ENTITY_TYPE,
    MAX_QUERY_INT,
    NO_CONTROL,
    AltText,
    CanonicalContentType,
    Count,
    Description,
    DisplayOrder,
    EntityType,
    ResizeSide,
    Schema,
    Shape,
    Timestamp,
    Title,
    Url,
    Uuid,
    UuidText,
    documented,
    limited_by,
    says,
)
from mediasvc.pipeline.jobs import OPERATIONS, OperationName
from mediasvc.records import JobState, MediaStatus
from mediasvc.settings import Settings

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


class Placeholder(Shape):
    """What to show while the thumbnail loads: a ThumbHash of the thumbnail (the image as
    shown: upright, sRGB, transparency kept) and its average colour."""

    thumbhash: Annotated[
        str,
        Meta(
            pattern="^[A-Za-z0-9+/]+={0,2}\\Z",
            max_length=36,
            description="The ThumbHash (at most 25 bytes) in base64: any ThumbHash "
            "library decodes it to a small image of the same aspect ratio",
            examples=["odYFHYqAh4eCh3iHiHeHd3CCB9h3"],
        ),
    ]
    color: Annotated[
        str,
        Meta(
            pattern="^#[0-9a-f]{6}\\Z",
            description="The ThumbHash's average colour in sRGB",
            examples=["#6d81a3"],
        ),
    ]


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
    placeholder: Annotated[
        Placeholder | None,
        Meta(
            description="What to show while the thumbnail loads: images, videos (the poster) "
            "and PDFs (the preview) once processed; null for audio, other documents and "
            "failed media"
        ),
    ]
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
