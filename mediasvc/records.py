"""Media and job records as the service holds them, and the values derived from them.

The repository is the only place that turns these into MongoDB documents and back
(`to_doc` / `from_doc`). Two derived fields are stored on every media record so lists are
served from indexes on any MongoDB-wire server:

* ``sort_key``: the list order (display order, then newest first, then id) as one string
  that sorts the same way, so one indexed key orders every list and a keyset cursor is
  a plain range on it;
* ``search_text``: filename, title and description lowercased, so a case-insensitive
  substring search is a plain ``$regex`` on one field inside an indexed branch.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

Doc = dict[str, Any]

ORDER_DIGITS = 12  # display_order must stay below 10**12 (settings enforce it)
_TIME_DIGITS = 13  # milliseconds until the year 2286
_TIME_CEILING = 10**_TIME_DIGITS - 1
SORT_KEY = re.compile(rf"^[0-9]{{{ORDER_DIGITS}}}\.[0-9]{{{_TIME_DIGITS}}}\.[0-9a-f-]{{36}}$")


def now_ms() -> int:
    """Now, as integer milliseconds since the Unix epoch: the one clock of every record.

    Timestamps are stored as such integers, not BSON datetimes: they sort and compare the
    same on every MongoDB-wire server (the embedded one turns datetimes set by `$set` into
    strings).
    """
    return time.time_ns() // 1_000_000


class MediaStatus(StrEnum):
    """Where a media is in its life: uploaded (or not yet), processed, usable."""

    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class JobState(StrEnum):
    """Where a processing job is; queued and running ones are active (one per media)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


ACTIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class StorageKey:
    """Where a media's original lives: ``media/<entity_type>/<entity_id>/<id>.<ext>``.

    Derived files sit beside it as ``<id>.<variant>.<ext>``; building and reading keys
    happens here only.
    """

    entity_type: str
    entity_id: str
    media_id: str
    extension: str

    _PATTERN: ClassVar[re.Pattern[str]] = re.compile(
        r"^media/(?P<entity_type>[^/]+)/(?P<entity_id>[^/]+)/"
        r"(?P<media_id>[0-9a-f-]{36})\.(?P<extension>[a-z0-9]+)$"
    )

    def __str__(self) -> str:
        return f"media/{self.entity_type}/{self.entity_id}/{self.media_id}.{self.extension}"

    def variant(self, name: str, extension: str) -> str:
        """The key of a derived file (thumbnail, optimized, resized) of this media."""
        return f"media/{self.entity_type}/{self.entity_id}/{self.media_id}.{name}.{extension}"

    @classmethod
    def parse(cls, key: str) -> StorageKey | None:
        """The parts of an original's key, or None if `key` is not one."""
        match = cls._PATTERN.fullmatch(key)
        return cls(**match.groupdict()) if match else None


def sort_key(display_order: int, created_at: int, media_id: str) -> str:
    """The list order as one string: display order up, then newest first, then id."""
    newest_first = _TIME_CEILING - created_at
    return f"{display_order:0{ORDER_DIGITS}d}.{newest_first:0{_TIME_DIGITS}d}.{media_id}"


SEARCH_SEPARATOR = "\x1f"  # a search may not contain control characters: none spans two texts


def search_text(filename: str, title: str, description: str) -> str:
    """What a list's `search` matches: the three texts, lowercased, apart (a NUL would do
    better, but the embedded server's `$regex` matches nothing in a string holding one)."""
    return SEARCH_SEPARATOR.join((filename, title, description)).lower()


def plain_fields(record: Any) -> Doc:
    """A record's fields as a dict, its lists and dicts copied, as `dataclasses.asdict` would.

    The fields of a record hold only JSON-shaped values (scalars, lists, dicts), so this
    needs none of asdict's general machinery: its per-value `copy.deepcopy` dispatch made
    the two documents of an upload cost more than the rest of its request handling."""
    cls = type(record)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return {name: _plain(getattr(record, name)) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # of each record class, found at its first use


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@dataclass
class MediaRecord:
    """One media: its file, where it is in processing, and what people wrote about it."""

    id: str
    entity_type: str
    entity_id: str
    media_type: str
    content_type: str
    extension: str
    filename: str
    storage_key: str
    uploaded_by: str
    created_at: int
    updated_at: int
    file_size: int = 0
    sha256: str | None = None
    title: str = ""
    description: str = ""
    alt_text: str = ""
    status: MediaStatus = MediaStatus.PENDING
    error: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    bitrate: int | None = None
    pages: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    is_primary: bool = False
    primary_slot: str | None = None
    display_order: int = 0
    view_count: int = 0
    download_count: int = 0
    variants: list[Doc] = field(default_factory=list)
    thumbnail_key: str | None = None
    # {"thumbhash": <base64>, "color": "#rrggbb"} of a processed image, video poster or PDF
    # preview; absent from records written before placeholders existed (read as None).
    placeholder: Doc | None = None
    job: Doc | None = None
    upload_expires_at: int | None = None
    upload_rejected: bool = False
    upload_offset: int | None = None  # bytes received so far, for resumable (tus) uploads
    # Events of this media not yet turned into deliveries (mediasvc/webhooks/events.py): set
    # by the write that causes them, removed by the relay; never part of a change.
    outbox: list[str] = field(default_factory=list)

    @classmethod
    def new(
        cls,
        *,
        entity: tuple[str, str],
        uploaded_by: str,
        kind_media_type: str,
        content_type: str,
        extension: str,
        filename: str,
        now: int,
        **fields: Any,
    ) -> MediaRecord:
        """A new pending media with a fresh id and the storage key made from it."""
        media_id = str(uuid.uuid4())
        entity_type, entity_id = entity
        key = StorageKey(entity_type, entity_id, media_id, extension)
        return cls(
            id=media_id,
            entity_type=entity_type,
            entity_id=entity_id,
            media_type=kind_media_type,
            content_type=content_type,
            extension=extension,
            filename=filename,
            storage_key=str(key),
            uploaded_by=uploaded_by,
            created_at=now,
            updated_at=now,
            **fields,
        )

    @property
    def entity_slot(self) -> str:
        """``<entity_type>:<entity_id>``: the entity as grants and the primary index name it."""
        return f"{self.entity_type}:{self.entity_id}"

    @property
    def key(self) -> StorageKey:
        """The parts of the original's storage key."""
        parsed = StorageKey.parse(self.storage_key)
        if parsed is None:  # keys are only ever made by StorageKey
            raise ValueError(f"not a media storage key: {self.storage_key!r}")
        return parsed

    @property
    def sort_key(self) -> str:
        return sort_key(self.display_order, self.created_at, self.id)

    @property
    def search_text(self) -> str:
        return search_text(self.filename, self.title, self.description)

    def stored_keys(self) -> list[str]:
        """Every storage key this media owns: the original and each derived file."""
        keys = [self.storage_key, *(v["key"] for v in self.variants)]
        if self.thumbnail_key:
            keys.append(self.thumbnail_key)
        return keys

    def to_doc(self) -> Doc:
        """The MongoDB document, with its derived fields."""
        doc = plain_fields(self)
        doc["_id"] = doc.pop("id")
        doc["status"] = str(self.status)
        if doc["primary_slot"] is None:
            del doc["primary_slot"]  # the unique index is sparse: absent, not null
        if self.outbox:  # what the relay finds it by: the oldest event's time
            doc["outbox_at"] = min(int(entry.split(":", 1)[0]) for entry in self.outbox)
        else:
            del doc["outbox"]
        doc.update(derived_fields(self))
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> MediaRecord:
        """A record from its document; fields it does not know (derived ones) are dropped."""
        values = {name: doc[name] for name in _MEDIA_FIELDS if name in doc}
        values["id"] = doc["_id"]
        values["status"] = MediaStatus(doc.get("status", "pending"))
        values["is_primary"] = bool(doc.get("is_primary"))
        values["upload_rejected"] = bool(doc.get("upload_rejected"))
        return cls(**values)


_MEDIA_FIELDS = frozenset(f.name for f in dataclasses.fields(MediaRecord)) - {"id"}
_CHANGEABLE = _MEDIA_FIELDS - {"outbox"}  # events are pushed and pulled, never set
# What the stored derived fields are made from (`entity_slot` never changes).
DERIVED_SOURCES = ("display_order", "filename", "title", "description")


def derived_fields(media: MediaRecord) -> Doc:
    """The fields stored beside a record's own so its lists are index-served."""
    return {
        "sort_key": media.sort_key,
        "search_text": media.search_text,
        "entity_slot": media.entity_slot,
    }


def stored_changes(changes: Mapping[str, Any]) -> Doc:
    """Changes to a record as a `$set` document: fields of the record only (never a derived
    one, which the repository keeps in step), enums as their values."""
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise ValueError(f"not changeable fields of a media record: {sorted(unknown)}")
    return {
        name: value.value if isinstance(value, StrEnum) else value
        for name, value in changes.items()
    }


def derived_changed(changes: Mapping[str, Any]) -> bool:
    """Whether a change touches what the derived fields are made from."""
    return any(name in changes for name in DERIVED_SOURCES)


@dataclass
class JobRecord:
    """One processing job of one media: what to make, its lane, and where it is.

    `active_slot` (the media id) is set while the job is queued or running and unset when it
    settles: a unique sparse index on it lets the database refuse a second active job.
    """

    id: str
    media_id: str
    operations: list[str]
    created_at: int
    updated_at: int
    options: Doc = field(default_factory=dict)
    lane: str = "heavy"
    state: JobState = JobState.QUEUED
    attempts: int = 0
    suspect: bool = False
    owner: str | None = None
    lease_expires_at: int = 0
    error: str | None = None
    started_at: int | None = None
    finished_at: int | None = None
    active_slot: str | None = None

    def to_doc(self) -> Doc:
        doc = plain_fields(self)
        doc["_id"] = doc.pop("id")
        doc["state"] = self.state.value
        if doc["active_slot"] is None:
            del doc["active_slot"]  # the unique index is sparse: absent, not null
        return doc

    @classmethod
    def from_doc(cls, doc: Doc) -> JobRecord:
        values = {name: doc[name] for name in _JOB_FIELDS if name in doc}
        values["id"] = doc["_id"]
        values["state"] = JobState(doc.get("state", JobState.QUEUED.value))
        values["suspect"] = bool(doc.get("suspect"))
        values["options"] = doc.get("options") or {}
        return cls(**values)

    def summary(self) -> Doc:
        """The part of a job shown on its media."""
        return {
            "id": self.id,
            "operations": self.operations,
            "options": self.options,
            "state": self.state.value,
            "attempts": self.attempts,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(JobRecord)) - {"id"}
