"""What operators and load balancers ask: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio

from mediasvc import metrics
from mediasvc.errors import MediaError
from mediasvc.handlers.base import BaseHandler
from mediasvc.models.ops import Health, NotReady, Readiness
from mediasvc.openapi import Answer, Operation, PathItem
from mediasvc.readiness import CHECK_TIMEOUT, dependency_checks
from mediasvc.records import ACTIVE_JOB_STATES, JobState

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
        ctx = self.ctx
        checks = await dependency_checks(ctx.repository, ctx.blobs, ctx.embedded_db)
        if checks.database == "ok" and checks.storage == "ok":
            self.write_model(Readiness(status="ready", checks=checks))
            return
        self.set_header("Retry-After", "2")
        self.write_model(NotReady(error="Not ready", checks=checks), status=503)


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


routes = [(r"/healthz", HealthHandler), (r"/readyz", ReadyHandler), (r"/metrics", MetricsHandler)]
