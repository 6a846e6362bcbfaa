"""The worker pool: a ProcessPoolExecutor that survives crashes and hung jobs.

A job that crashes its worker (segfault, SIGKILL, out of memory) or passes its timeout
breaks the whole executor, so the pool is rebuilt and the jobs that were running beside
it are reported as *bystanders*: they are run again, alone, to find out which job was
at fault without charging the others an attempt.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from mediasvc import metrics
from mediasvc.pipeline.tasks import TaskResult, TaskSpec, init_worker, run_task

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker running a job died or was killed; `alone` says whether it ran by itself."""

    def __init__(self, reason: str, *, alone: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alone = alone


@dataclass(frozen=True)
class PoolConfig:
    """How the pool is built (from the settings)."""

    workers: int
    tasks_per_child: int
    start_method: str
    memory_limit: int


class WorkerPool:
    """Runs TaskSpecs in worker processes with a per-job timeout."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.generation = 0
        self._in_flight: dict[int, int] = {}
        self._broken: dict[int, tuple[int, bool]] = {}
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        self.generation += 1
        self._in_flight[self.generation] = 0
        return ProcessPoolExecutor(
            max_workers=self.config.workers,
            mp_context=multiprocessing.get_context(self.config.start_method),
            initializer=init_worker,
            initargs=(self.config.memory_limit, os.getpid()),
            max_tasks_per_child=self.config.tasks_per_child,
        )

    async def run(self, spec: TaskSpec, timeout: float) -> TaskResult:
        """Run one job; raises WorkerLost if its worker died or it passed `timeout`."""
        generation = self.generation
        self._in_flight[generation] += 1
        metrics.WORKERS_BUSY.inc()
        try:
            future = asyncio.wrap_future(self._executor.submit(run_task, spec))
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                self._break(generation, timed_out=True)
                raise WorkerLost(
                    f"Processing took longer than {timeout:.0f}s", alone=True
                ) from None
            except BrokenProcessPool:
                width, timed_out = self._break(generation, timed_out=False)
                alone = width == 1 and not timed_out
                raise WorkerLost("The worker process crashed", alone=alone) from None
        finally:
            self._in_flight[generation] -= 1
            metrics.WORKERS_BUSY.dec()
            if self._in_flight[generation] == 0 and generation != self.generation:
                del self._in_flight[generation]
                self._broken.pop(generation, None)

    def _break(self, generation: int, *, timed_out: bool) -> tuple[int, bool]:
        """Replace a broken executor once; remember how many jobs it was running and why."""
        if generation not in self._broken:
            self._broken[generation] = (self._in_flight[generation], timed_out)
            if generation == self.generation:
                why = "a job timed out" if timed_out else "a worker process died"
                log.warning("rebuilding the worker pool: %s", why)
                old = self._executor
                self._executor = self._new_executor()
                self._kill(old)
        return self._broken[generation]

    @staticmethod
    def _kill(executor: ProcessPoolExecutor) -> None:
        # ProcessPoolExecutor cannot cancel a running task; killing its processes is the
        # only way to stop a hung job (it fails every task of that executor, by design).
        processes = list((getattr(executor, "_processes", None) or {}).values())
        for process in processes:
            if process.is_alive():
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop the workers (running jobs are abandoned; their leases will expire)."""
        self._kill(self._executor)
