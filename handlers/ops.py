"""What operators and load balancers ask: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mediasvc import metrics
from mediasvc.errors import MediaError
from mediasvc.handlers.base import BaseHandler
from mediasvc.models.ops import Check, Health, NotReady, Readiness, ReadinessChecks
from mediasvc.openapi import Answer, Operation, PathItem
from mediasvc.records import ACTIVE_JOB_STATES, JobState

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 2.0
# The job states /metrics counts (a gauge each): the queue, and what failed for good.
GAUGED_JOB_STATES = tuple(state.value for state in (*ACTIVE_JOB_STATES, JobState.FAILED))


def _operation(operation_id: str, summary: str, answers: dict[int, Answer]) -> Operation:
    return Operation(operation_id, summary, "operations", answers, public=True)


class HealthHandler(BaseHandler):
    """GET /healthz: the process is alive and its event loop answers."""

    openapi = PathItem(
        "/healthz",
        {
            "get": _operation(
                "health", "Liveness: the process answers", {200: Answer("Alive", Health)}
            )
        },
    )

    async def get(self) -> None:
        self.write_model(Health(status="ok"))


class ReadyHandler(BaseHandler):
    """GET /readyz: the database and the storage answer (503 otherwise)."""

    openapi = PathItem(
        "/readyz",
        {
            "get": _operation(
                "readiness",
                "Readiness: the database and the storage answer",
                {200: Answer("Ready", Readiness), 503: Answer("Not ready", NotReady)},
            )
        },
    )

    async def get(self) -> None:
        checks = ReadinessChecks(
            database=await self._database(), storage=await _check(self.ctx.blobs.check)
        )
        if checks.database == "ok" and checks.storage == "ok":
            self.write_model(Readiness(status="ready", checks=checks))
            return
        self.set_header("Retry-After", "2")
        self.write_model(NotReady(error="Not ready", checks=checks), status=503)

    async def _database(self) -> Check:
        embedded = self.ctx.embedded_db
        if embedded is not None and embedded.state == "restarting":
            return "restarting"  # it died and is being started again: no need to ask it
        return await _check(self.ctx.repository.ping)


class MetricsHandler(BaseHandler):
    """GET /metrics: Prometheus text for every server process of this machine."""

    openapi = PathItem(
        "/metrics",
        {
            "get": _operation(
                "metrics",
                "Prometheus metrics",
                {200: Answer("Prometheus text exposition format", str, media="text/plain")},
            )
        },
    )

    async def get(self) -> None:
        try:
            counts = await asyncio.wait_for(
                self.ctx.repository.count_jobs(GAUGED_JOB_STATES), CHECK_TIMEOUT
            )
        except (MediaError, TimeoutError):
            counts = {}  # the queue figures are skipped while the database is away
        for state, count in counts.items():
            metrics.JOBS.labels(state).set(count)
        body, content_type = metrics.render()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


async def _check(probe: Callable[[], Awaitable[None]]) -> Check:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # whatever it is, the dependency is not usable
        log.warning("readiness check failed: %s", exc)
        return "unavailable"
    return "ok"


routes = [(r"/healthz", HealthHandler), (r"/readyz", ReadyHandler), (r"/metrics", MetricsHandler)]
