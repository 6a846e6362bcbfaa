"""What operators and load balancers ask: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mediasvc import metrics
from mediasvc.errors import MediaError
from mediasvc.handlers.base import BaseHandler
from mediasvc.records import JobState

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 2.0
JOB_STATES = tuple(state.value for state in (JobState.QUEUED, JobState.RUNNING, JobState.FAILED))


class HealthHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    async def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """GET /readyz: the database and the storage answer (503 otherwise)."""

    async def get(self) -> None:
        checks = {
            "database": await self._database(),
            "storage": await _check(self.ctx.blobs.check),
        }
        if all(state == "ok" for state in checks.values()):
            self.write_json({"status": "ready", "checks": checks})
            return
        self.set_header("Retry-After", "2")
        self.write_json({"error": "Not ready", "checks": checks}, status=503)

    async def _database(self) -> str:
        embedded = self.ctx.embedded_db
        if embedded is not None and embedded.state == "restarting":
            return "restarting"  # it died and is being started again: no need to ask it
        return await _check(self.ctx.repository.ping)


class MetricsHandler(BaseHandler):
    """GET /metrics: Prometheus text for every server process of this machine."""

    async def get(self) -> None:
        try:
            counts = await asyncio.wait_for(
                self.ctx.repository.count_jobs(JOB_STATES), CHECK_TIMEOUT
            )
        except (MediaError, TimeoutError):
            counts = {}  # the queue figures are skipped while the database is away
        for state, count in counts.items():
            metrics.JOBS.labels(state).set(count)
        body, content_type = metrics.render()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


async def _check(probe: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # whatever it is, the dependency is not usable
        log.warning("readiness check failed: %s", exc)
        return "unavailable"
    return "ok"


routes = [(r"/healthz", HealthHandler), (r"/readyz", ReadyHandler), (r"/metrics", MetricsHandler)]
