"""The periodic sweep of a server process (and `mediasvc gc`): whatever died or failed half-way
is finished or removed here, so nothing is left behind for good."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor

from mediasvc.errors import MediaError
from mediasvc.services.deletions import FileDeletions
from mediasvc.services.idempotency import IdempotencyService
from mediasvc.services.lost_jobs import LostJobs
from mediasvc.services.presigned import PresignedUploads
from mediasvc.services.tus import TusUploads
from mediasvc.settings import Settings
from mediasvc.spool import sweep_orphans

log = logging.getLogger(__name__)


class Sweeper:
    """Expired presigned and resumable uploads, stale multipart uploads, orphaned spool entries,
    file deletions that failed before, jobs a crash kept out of the queue and idempotency keys
    that ran out; each step runs even when another one fails."""

    def __init__(
        self,
        presigned: PresignedUploads,
        deletions: FileDeletions,
        settings: Settings,
        io_executor: Executor,
        tus: TusUploads | None = None,
        lost_jobs: LostJobs | None = None,
        idempotency: IdempotencyService | None = None,
    ) -> None:
        self.presigned = presigned
        self.lost_jobs = lost_jobs
        self.tus = tus
        self.idempotency = idempotency
        self.deletions = deletions
        self.settings = settings
        self._io = io_executor

    async def sweep_spool(self) -> int:
        """Remove spool files and job folders of processes that no longer run."""
        return await asyncio.get_running_loop().run_in_executor(
            self._io, sweep_orphans, self.settings.spool_path, self.settings.spool_unowned_max_age
        )

    async def sweep(self) -> dict[str, int | list[str]]:
        """One sweep; the counts of what it did, and `errors` when a step could not run."""
        report: dict[str, int | list[str]] = {}
        errors: list[str] = []
        steps = [
            ("presigned uploads", self.presigned.sweep),
            ("spool", self._spool_counts),
            ("deletions", self.deletions.retry),
        ]
        if self.tus is not None:
            steps.insert(1, ("resumable uploads", self.tus.sweep))
        if self.lost_jobs is not None:
            steps.append(("lost jobs", self.lost_jobs.requeue))
        if self.idempotency is not None:
            steps.append(("idempotency keys", self.idempotency.sweep))
        for name, step in steps:
            try:
                report.update(await step())
            except MediaError as exc:
                errors.append(f"{name}: {exc.message}")
            except Exception as exc:
                log.exception("sweep of %s failed", name)
                errors.append(f"{name}: {type(exc).__name__}")
        if errors:
            log.warning("sweep incomplete: %s", "; ".join(errors))
            report["errors"] = errors
        return report

    async def _spool_counts(self) -> dict[str, int]:
        return {"orphaned_spool_entries": await self.sweep_spool()}

    async def sweep_forever(self) -> None:
        """Sweep every `sweep_interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            started = time.monotonic()
            await self.sweep()
            log.debug("sweep took %.2fs", time.monotonic() - started)
