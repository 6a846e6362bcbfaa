"""Uploads: multipart forms, tus metadata, batch results, presigned requests and answers."""

from __future__ import annotations

import inspect
from typing import Annotated

from msgspec import UNSET, Meta, UnsetType

from mediasvc.media_types import KINDS
from mediasvc.models.base import (
    MAX_QUERY_INT,
    AltText,
    Binary,
    Count,
    Description,
    DisplayOrder,
    EntityType,
    Filename,
    Schema,
    Sha256,
    Shape,
    Timestamp,
    Title,
    UploadContentType,
    Url,
    Uuid,
    UuidText,
    documented,
    limited_by,
    says,
)
from mediasvc.records import MediaStatus
from mediasvc.settings import MB, Settings

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


Dedupe = Annotated[
    bool,
    Meta(
        description="true: if the entity already has a media with the same content (sha256 and "
        "size; not a failed or pending one), answer 200 with it and store nothing new. Also "
        "1/0, yes/no, on/off; empty is false"
    ),
]


class UploadFormFields(UploadFields):
    """The fields of a direct upload's form besides its file."""

    dedupe: Dedupe = False


class UploadForm(UploadFormFields, kw_only=True):
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


class BatchFields(EntityRef):
    """The fields of a batch upload's form besides its files."""

    dedupe: Annotated[
        bool,
        Meta(
            description="true: each file whose content the entity already has (sha256 and size; "
            "not a failed or pending media) is listed in `existing` with that media, and not "
            "stored again. Also 1/0, yes/no, on/off; empty is false"
        ),
    ] = False


class BatchUploadForm(BatchFields, kw_only=True):
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
    """The counts of a batch; `successful` counts the files `existing` lists too."""

    total: Count
    successful: Count
    failed: Count
    existing: Annotated[Count, Meta(description="With dedupe=true only")] | UnsetType = UNSET


class BatchResult(Shape):
    """What a batch upload made of each file."""

    created: list[BatchCreated]
    errors: list[BatchError]
    summary: BatchSummary
    existing: (
        Annotated[
            list[BatchCreated],
            Meta(
                description="With dedupe=true only: the files the entity already had, each with "
                "the media that has its content (nothing new was stored for them)"
            ),
        ]
        | UnsetType
    ) = UNSET


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


# ---- deduplication by checksum


class ContentRef(Shape):
    """A file's content, as a client computes it before uploading."""

    sha256: Sha256
    size: Annotated[int, Meta(ge=1, le=MAX_QUERY_INT), says("{name} must be a positive integer")]


class CheckRequest(EntityRef):
    """Which of these contents the entity already has (at most {max_check_files} files:
    `max_check_files`)."""

    files: Annotated[
        list[ContentRef],
        Meta(min_length=1),
        limited_by("maxItems", "max_check_files"),
        says(
            '{name} must be a non-empty list of {{"sha256", "size"}}',
            high="{name} may hold at most {limit} files",
        ),
    ]


class CheckResult(Shape):
    """One file of a check: the media of the entity with that content, or null."""

    sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}\\Z")]
    size: Count
    id: Annotated[
        UuidText | None,
        Meta(
            description="A media of the entity with this sha256 and size (not a failed or "
            "pending one), or null"
        ),
    ]


class CheckAnswer(Shape):
    """The files of the request, in its order."""

    results: list[CheckResult]
