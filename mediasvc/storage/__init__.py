"""Blob stores: where originals and derived files live. Settings pick one implementation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PresignedUpload:
    """Where and how a client PUTs the bytes of a presigned upload."""

    url: str
    headers: dict[str, str]
    expires_at: int  # Unix seconds


class BlobStore(ABC):
    """Stores files under server-made keys such as ``media/<type>/<id>/<media_id>.<ext>``."""

    @abstractmethod
    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at `path` durably under `key`; `path` is consumed (moved or removed)."""

    @abstractmethod
    async def delete(self, keys: Iterable[str]) -> None:
        """Delete the given keys; keys that do not exist are ignored."""

    @abstractmethod
    async def size_of(self, key: str) -> int | None:
        """The size of the object under `key`, or None when there is none."""

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return await self.size_of(key) is not None

    @abstractmethod
    async def read_head(self, key: str, length: int) -> bytes:
        """The first `length` bytes of an object (for type sniffing)."""

    @abstractmethod
    async def local_copy(self, key: str, work_dir: Path) -> Path:
        """A local file with the object's bytes for a worker to read (may be the file itself)."""

    @abstractmethod
    def url(self, key: str, base_url: str) -> str:
        """A URL a client can fetch the object from (may be signed and expire)."""

    @abstractmethod
    def presign_upload(
        self, key: str, content_type: str, size: int, ttl: int, base_url: str
    ) -> PresignedUpload:
        """A URL the client PUTs exactly `size` bytes of `content_type` to, valid `ttl` s."""

    @abstractmethod
    async def digest(self, key: str) -> str:
        """The sha256 hex digest of a stored object, read back in full."""

    # ---- uploads in parts (resumable uploads); a store without them takes whole files

    @property
    def takes_parts(self) -> bool:
        """Whether an upload may arrive part by part (S3 multipart) instead of as one file."""
        return False

    async def start_parts(self, key: str, content_type: str) -> str:
        """Begin an upload in parts of `key`; returns its id."""
        raise NotImplementedError

    async def put_part(self, key: str, upload_id: str, number: int, path: Path) -> str:
        """Store the file at `path` as part `number` (from 1); returns its tag."""
        raise NotImplementedError

    async def finish_parts(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Join the (number, tag) parts into the object; FileNotFoundError if the upload is no
        longer open (finished already, or aborted)."""
        raise NotImplementedError

    async def abort_parts(self, key: str, upload_id: str) -> None:
        """Drop an upload in parts and every part it holds (an unknown one is ignored)."""
        raise NotImplementedError

    async def sweep_incomplete(self, older_than: int) -> int:
        """Abort partial uploads older than `older_than` seconds; returns how many."""
        return 0

    @abstractmethod
    async def check(self) -> None:
        """Raise if the store cannot be reached (readiness)."""
