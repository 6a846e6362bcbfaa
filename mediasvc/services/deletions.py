"""File deletions that survive a storage outage: recorded first, done now or by a sweep later.

Deleting a record and then its files is two steps on two systems. A file deletion that fails
(storage down) is kept in the ``deletions`` collection and retried by every sweep until it
is done, so no original or variant stays in the bucket for good.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable

from mediasvc.errors import MediaError
from mediasvc.records import Doc, now_ms
from mediasvc.repository import MediaRepository
from mediasvc.storage import BlobStore

log = logging.getLogger(__name__)
RETRY_BATCH = 100


class FileDeletions:
    """Deletes stored files; remembers the ones it could not delete (yet)."""

    def __init__(
        self, repository: MediaRepository, blobs: BlobStore, clock: Callable[[], int] = now_ms
    ) -> None:
        self.repository = repository
        self.blobs = blobs
        self.clock = clock

    async def delete(
        self, keys: Iterable[str], media_id: str | None = None, not_before: int = 0
    ) -> None:
        """Delete `keys` now, and until `not_before` (ms) again and again.

        With `media_id`, a retry skips keys that media refers to again by then (a later job
        can make a variant under the same key). `not_before` covers a presigned URL that
        can still put the object back until it expires. Never raises for storage trouble.
        """
        batch = sorted({key for key in keys if key})
        if not batch:
            return
        recorded = await self._record(batch, media_id, not_before)
        try:
            await self.blobs.delete(batch)
        except Exception as exc:  # storage down: the record makes a sweep retry it
            reason = _reason(exc)
            if not recorded:
                log.error("could not delete %d files, nor record them: %s", len(batch), reason)
                return
            log.warning("could not delete %d files (%s); the sweep retries", len(batch), reason)
            await self._note_failure(batch, reason)
            return
        if recorded and not_before <= self.clock():
            await self._forget(batch)

    async def retry(self, now: int | None = None) -> dict[str, int]:
        """Do the recorded deletions whose time has come; returns done and still pending."""
        moment = self.clock() if now is None else now
        done = 0
        while True:
            due = await self.repository.due_deletions(moment, RETRY_BATCH)
            used = [d["_id"] for d in due if await self._still_used(d)]
            await self.repository.forget_deletions(used)
            keys = [d["_id"] for d in due if d["_id"] not in used]
            if keys:
                try:
                    await self.blobs.delete(keys)
                except Exception as exc:
                    await self.repository.deletions_failed(keys, _reason(exc))
                    log.warning("could not delete %d files: %s", len(keys), _reason(exc))
                    break
                await self.repository.forget_deletions(keys)
                done += len(keys)
            if len(due) < RETRY_BATCH:
                break
        if done:
            log.info("deleted %d files whose deletion had failed before", done)
        return {"deleted_files": done, "pending_deletions": await self.repository.count_deletions()}

    async def _still_used(self, deletion: Doc) -> bool:
        media_id = deletion.get("media_id")
        media = await self.repository.get(media_id) if media_id else None
        if media is None:
            return False
        return deletion["_id"] in media.stored_keys()

    async def _record(self, keys: list[str], media_id: str | None, not_before: int) -> bool:
        try:
            await self.repository.record_deletions(keys, media_id, not_before)
        except MediaError as exc:  # the database may be what failed: still try the storage
            log.warning("could not record the deletion of %d files: %s", len(keys), exc.message)
            return False
        return True

    async def _note_failure(self, keys: list[str], reason: str) -> None:
        with contextlib.suppress(MediaError):  # the record is there; only its count is behind
            await self.repository.deletions_failed(keys, reason)

    async def _forget(self, keys: list[str]) -> None:
        with contextlib.suppress(MediaError):  # a later sweep deletes them again, harmlessly
            await self.repository.forget_deletions(keys)


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"
