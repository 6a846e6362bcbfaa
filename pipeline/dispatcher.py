"""The dispatcher: claims jobs from the queue, runs them in the pool, records the outcome.

One runs in every server process (and in `mediasvc worker`). It holds at most
`max_queued_jobs` jobs, keeps their leases alive while they run, and writes results on the
media: derived files as `variants`, facts such as width and height, and its `status`, with
the event of that status (media.ready, media.failed) in the same update.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from mediasvc import metrics
from mediasvc.errors import MediaError
from mediasvc.pipeline import budget
from mediasvc.pipeline.jobs import CHEAP, HEAVY
from mediasvc.pipeline.pool import WorkerLost, WorkerPool
from mediasvc.pipeline.queue import JobQueue
from mediasvc.pipeline.tasks import Limits, TaskResult, TaskSpec, Variant
from mediasvc.records import Doc, JobRecord, JobState, MediaRecord, MediaStatus, now_ms
from mediasvc.repository import MediaRepository
from mediasvc.services.deletions import FileDeletions
from mediasvc.settings import Settings
from mediasvc.spool import owner_tag
from mediasvc.storage import BlobStore
from mediasvc.webhooks.events import EventType, new_event

log = logging.getLogger(__name__)
MEDIA_FACTS = (
    "width", "height", "duration", "bitrate", "pages", "video_codec", "audio_codec", "placeholder",
)  # fmt: skip


class Dispatcher:
    """Moves jobs from the queue through the pool onto their media."""

    def __init__(
        self,
        queue: JobQueue,
        repository: MediaRepository,
        blobs: BlobStore,
        pool: WorkerPool,
        settings: Settings,
        io_executor: Executor,
    ) -> None:
        self.queue = queue
        self.repository = repository
        self.blobs = blobs
        self.pool = pool
        self.settings = settings
        self._io = io_executor
        self.deletions = FileDeletions(repository, blobs)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.max_queued_jobs)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._heavy_running = 0
        # Heavy jobs may take all workers but one: still images never wait behind them.
        self._heavy_limit = settings.max_heavy_jobs or max(1, settings.workers - 1)
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_housekeeping = 0.0
        self._housekeeping_interval = max(
            settings.dispatcher_poll_interval, min(5.0, settings.job_lease / 4)
        )

    @property
    def lease_ms(self) -> int:
        """Lease length in milliseconds."""
        return int(self.settings.job_lease * 1000)

    def start(self) -> None:
        """Begin claiming jobs in the background."""
        self._loop_task = asyncio.create_task(self._claim_loop(), name="dispatcher")

    def wake(self) -> None:
        """A job was just queued here: look now instead of at the next poll."""
        self._wake.set()

    def stop_claiming(self) -> None:
        """Take no new jobs (the first step of a shutdown)."""
        self._stopping = True
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running jobs finish within `grace` seconds, hand back the rest."""
        self.stop_claiming()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self.pool.shutdown()

    # ---- claiming

    async def _claim_loop(self) -> None:
        await self._assign_lanes()
        while not self._stopping:
            await self._slots.acquire()
            try:
                job = await self._claim()
            except MediaError as exc:  # the database down, or full
                log.warning("could not claim a job: %s", exc.message)
                job = None
            except Exception:
                log.exception("could not claim a job")
                job = None
            if job is None:
                self._slots.release()
                await self._idle()
                continue
            if job.suspect:
                await self._run_alone(job)
                continue
            self._spawn(job)

    async def _claim(self) -> JobRecord | None:
        if self._stopping:
            return None
        # Suspects and expired leases are rare: look for them now and then, not at every
        # claim, which keeps an idle or busy queue at one query per claim.
        housekeeping = time.monotonic() >= self._next_housekeeping
        if housekeeping:
            self._next_housekeeping = time.monotonic() + self._housekeeping_interval
        if housekeeping and not self._running:  # suspects run alone: a crash names its culprit
            job = await self.queue.claim(self.lease_ms, suspects=True)
            if job is not None:
                return job
        # Two lanes: heavy jobs first while they are under their share of the workers (so
        # they never starve), then cheap ones, which always have the rest.
        heavy_free = self._heavy_running < self._heavy_limit
        if heavy_free:
            job = await self.queue.claim(self.lease_ms, lane=HEAVY, expired=False)
            if job is not None:
                return job
        return await self.queue.claim(
            self.lease_ms, lane=CHEAP, expired=housekeeping and heavy_free
        )

    async def _assign_lanes(self) -> None:
        try:
            await self.queue.assign_lanes(HEAVY)
        except Exception:
            log.warning("could not put jobs of an older version into a lane")

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.dispatcher_poll_interval)

    def _spawn(self, job: JobRecord) -> None:
        task = asyncio.create_task(self._handle(job), name=f"job-{job.id}")
        self._running[job.id] = task
        heavy = job.lane != CHEAP
        self._heavy_running += heavy

        def done(_: asyncio.Task[None]) -> None:
            self._heavy_running -= heavy
            self._running.pop(job.id, None)
            self._slots.release()
            self._wake.set()

        task.add_done_callback(done)

    async def _run_alone(self, job: JobRecord) -> None:
        self._spawn(job)
        task = self._running.get(job.id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # ---- one job

    async def _handle(self, job: JobRecord) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            await self._process(job)
        except asyncio.CancelledError:
            await asyncio.shield(self._hand_back(job))
            raise
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            await self._attempt_failed(job, f"Internal error: {type(exc).__name__}")
        finally:
            heartbeat.cancel()

    async def _process(self, job: JobRecord) -> None:
        # Showing the job as running and reading the media is one round trip. The media is
        # shown processing here too: a process request that queued this job sets that only
        # while the media still shows its previous job, so a claim between its two writes
        # would otherwise leave a ready media showing "ready" while it is processed.
        running = dataclasses.replace(job, state=JobState.RUNNING).summary()
        claimed = {"job": running, "status": MediaStatus.PROCESSING, "error": None}
        media = await self.repository.update(job.media_id, claimed)
        if media is None:
            await self.queue.settle(job.id, JobState.FAILED, "The media was deleted")
            return
        if job.attempts > self.settings.job_max_attempts:
            await self._give_up(job, media, job.error or "Too many attempts")
            return
        spool = self.settings.spool_path
        work_dir = await self._io_call(tempfile.mkdtemp, "", f"job-{owner_tag(spool)}-", str(spool))
        try:
            spec = await self._spec(job, media, work_dir)
            started = time.monotonic()
            try:
                result = await self.pool.run(spec, self.settings.job_timeout)
            except WorkerLost as lost:
                _observe(job, media, started, "lost")
                over_budget = await self._io_call(budget.read_marker, work_dir)
                if over_budget:  # ended for its CPU budget: the input is at fault, no retry
                    await self._give_up(job, media, over_budget)
                else:
                    await self._worker_lost(job, lost)
                return
            _observe(job, media, started, "failed" if result.error else "done")
            if result.error:  # the input is at fault: no retry; what worked is kept
                await self._give_up(job, media, result.error, result)
            else:
                await self._succeed(job, media, result)
        finally:
            await self._io_call(shutil.rmtree, work_dir, True)

    async def _spec(self, job: JobRecord, media: MediaRecord, work_dir: str) -> TaskSpec:
        source = await self.blobs.local_copy(media.storage_key, Path(work_dir))
        resize = job.options.get("resize")
        settings = self.settings
        return TaskSpec(
            media_id=media.id,
            media_type=media.media_type,
            content_type=media.content_type,
            extension=media.extension,
            source=str(source),
            work_dir=work_dir,
            operations=tuple(job.operations),
            resize=(int(resize["width"]), int(resize["height"])) if resize else None,
            limits=Limits(
                thumbnail_size=settings.thumbnail_size,
                max_pixels=settings.max_image_pixels,
                max_frames=settings.max_animation_frames,
                video_max_height=settings.video_max_height,
                waveform_size=settings.waveform_size,
                timeout=settings.job_timeout,
                max_animation_pixels=settings.max_animation_pixels,
                max_video_pixels=settings.max_video_pixels,
                max_video_duration=settings.max_video_duration,
                max_video_frames=settings.max_video_frames,
                max_pdf_pages=settings.max_pdf_pages,
                max_pdf_page_pixels=settings.max_pdf_page_pixels,
                svg_render_size=settings.svg_render_size,
                cpu_limit=settings.job_cpu_limit,
                svg_cpu_limit=settings.svg_cpu_limit,
            ),
        )

    async def _heartbeat(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.job_lease / 3)
            try:
                await self.queue.renew(job_id, self.lease_ms)
            except Exception:
                log.warning("could not renew the lease of job %s", job_id)

    # ---- outcomes

    async def _succeed(self, job: JobRecord, media: MediaRecord, result: TaskResult) -> None:
        stored = await self._store_variants(media, result.variants)
        settled = await self.queue.settle(job.id, JobState.DONE)
        if settled is None:  # our lease was lost and someone else has the job now
            await self.deletions.delete([v["key"] for v in stored], media.id)
            return
        variants = _merge_variants(media.variants, stored)
        changes = _result_changes(variants, result)
        # The media is ready only if no later job was queued for it meanwhile (that job's
        # summary would have replaced ours): one conditional update, no count.
        finished = {
            **changes,
            "status": MediaStatus.READY,
            "error": None,
            "job": settled.summary(),
        }
        ready = [new_event(EventType.MEDIA_READY)]
        updated = await self.repository.update(media.id, finished, job_is=job.id, events=ready)
        if updated is None:
            updated = await self.repository.update(media.id, changes)
        if updated is None:
            await self.deletions.delete([v["key"] for v in stored])  # deleted while we worked
            return
        replaced = {v["key"] for v in media.variants} - {v["key"] for v in variants}
        await self.deletions.delete(replaced, media.id)

    async def _store_variants(self, media: MediaRecord, variants: tuple[Variant, ...]) -> list[Doc]:
        original = media.key
        stored = []
        for variant in variants:
            extension = variant.path.rsplit(".", 1)[-1]
            key = original.variant(variant.name, extension)
            size = (await self._io_call(os.stat, variant.path)).st_size
            await self.blobs.put_file(key, Path(variant.path), variant.content_type)
            stored.append(
                {
                    "name": variant.name,
                    "key": key,
                    "content_type": variant.content_type,
                    "width": variant.width,
                    "height": variant.height,
                    "size": size,
                }
            )
        return stored

    async def _worker_lost(self, job: JobRecord, lost: WorkerLost) -> None:
        if lost.alone:
            await self._attempt_failed(job, lost.reason)
        else:  # a bystander of another job's crash: run it again, alone, uncharged
            await self.queue.release(job.id, suspect=True)

    async def _attempt_failed(self, job: JobRecord, reason: str) -> None:
        media = await self.repository.get(job.media_id)
        if media is None:
            await self.queue.settle(job.id, JobState.FAILED, "The media was deleted")
        elif job.attempts >= self.settings.job_max_attempts:
            await self._give_up(job, media, reason)
        else:
            retried = await self.queue.retry(job.id, reason)
            if retried is not None:
                await self._show(media.id, retried)
                self.wake()

    async def _give_up(
        self, job: JobRecord, media: MediaRecord, reason: str, result: TaskResult | None = None
    ) -> None:
        """Fail the job and its media; the variants and facts a partial result has are kept
        (not a placeholder: a failed media has none)."""
        stored = await self._store_variants(media, result.variants) if result else []
        settled = await self.queue.settle(job.id, JobState.FAILED, reason)
        if settled is None:
            await self.blobs.delete([v["key"] for v in stored])
            return
        log.info("job %s of media %s failed: %s", job.id, media.id, reason)
        changes: Doc = {"updated_at": now_ms()}
        old = media.variants
        if result is not None:
            changes = _result_changes(_merge_variants(old, stored), result)
        failed = {
            **changes,
            "placeholder": None,  # only ready media carry one
            "status": MediaStatus.FAILED,
            "error": reason,
            "job": settled.summary(),
        }
        events = [new_event(EventType.MEDIA_FAILED)]
        if await self.repository.update(media.id, failed, events=events) is None:
            await self.blobs.delete([v["key"] for v in stored])  # deleted while we worked
            return
        if stored:
            replaced = {v["key"] for v in old} - {v["key"] for v in changes["variants"]}
            await self.blobs.delete(sorted(replaced))

    async def _hand_back(self, job: JobRecord) -> None:
        try:
            await self.queue.release(job.id, suspect=bool(job.suspect))
        except Exception:
            log.warning("could not hand back job %s; its lease will expire", job.id)

    async def _show(self, media_id: str, job: JobRecord) -> None:
        await self.repository.update(media_id, {"job": job.summary()})

    async def _io_call(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, func, *args)


def _observe(job: JobRecord, media: MediaRecord, started: float, outcome: str) -> None:
    operations = "+".join(job.operations)
    labels = metrics.JOB_SECONDS.labels(operations, media.media_type, outcome)
    labels.observe(time.monotonic() - started)


def _result_changes(variants: list[Doc], result: TaskResult) -> Doc:
    """The media fields a job's result sets: its variants, thumbnail and facts."""
    changes: Doc = {
        "variants": variants,
        "thumbnail_key": next((v["key"] for v in variants if v["name"] == "thumbnail"), None),
        "updated_at": now_ms(),
    }
    changes.update({k: v for k, v in result.info.items() if k in MEDIA_FACTS and v is not None})
    return changes


def _merge_variants(old: list[Doc], new: list[Doc]) -> list[Doc]:
    """New variants replace old ones of the same name; the rest are kept."""
    names = {v["name"] for v in new}
    return [v for v in old if v["name"] not in names] + new
