"""Blob stores: where originals and derived files live. Settings pick one implementation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path


class BlobStore(ABC):
    """Stores files under server-made keys such as ``media/<type>/<id>/<media_id>.<ext>``."""

    @abstractmethod
    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at `path` durably under `key`; `path` is consumed (moved or removed)."""

    @abstractmethod
    async def delete(self, keys: Iterable[str]) -> None:
        """Delete the given keys; keys that do not exist are ignored."""

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abstractmethod
    async def local_copy(self, key: str, work_dir: Path) -> Path:
        """A local file with the object's bytes for a worker to read (may be the file itself)."""

    @abstractmethod
    def url(self, key: str, base_url: str) -> str:
        """A URL a client can fetch the object from (may be signed and expire)."""

    @abstractmethod
    async def check(self) -> None:
        """Raise if the store cannot be reached (readiness)."""
