"""Prometheus metrics, shared by the processes of one machine.

When PROMETHEUS_MULTIPROC_DIR is set before this module is imported (the `mediasvc`
command does it, from the `metrics_dir` setting), every process writes its values there
and any of them can answer a scrape for all; otherwise the values live in this process.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as _DEFAULT_REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "mediasvc_http_requests_total", "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "mediasvc_http_request_duration_seconds", "HTTP request latency by route and method.",
    ["route", "method"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
UPLOAD_BYTES = Counter(
    "mediasvc_upload_bytes_total", "Request body bytes received by upload endpoints.", ["kind"]
)
UPLOADS_ACTIVE = Gauge(
    "mediasvc_uploads_active", "Uploads being streamed right now.", multiprocess_mode="livesum"
)
WORKERS_BUSY = Gauge(
    "mediasvc_pool_workers_busy", "Pool workers running a job.", multiprocess_mode="livesum"
)
JOBS = Gauge(
    "mediasvc_jobs", "Jobs in the queue by state (read at scrape time).", ["state"],
    multiprocess_mode="mostrecent",
)  # fmt: skip
JOB_SECONDS = Histogram(
    "mediasvc_job_duration_seconds", "Processing time of jobs by operations, media type, outcome.",
    ["operations", "media_type", "outcome"], buckets=_JOB_BUCKETS,
)  # fmt: skip


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str | None) -> str:
    """The method as a label, from a fixed set: anyone can invent methods, and each new
    label value would be a new series."""
    return method if method in _METHODS else "other"


def route_label(handler: Any) -> str:
    """The handler's class as a label: ours are a fixed set; anything else is "other"."""
    cls = type(handler)
    return cls.__name__ if cls.__module__.startswith("mediasvc.") else "other"


def render() -> tuple[bytes, str]:
    """The exposition text of every process of this machine, and its Content-Type."""
    registry: Any = _DEFAULT_REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exited() -> None:
    """Drop this process's live gauges from the shared folder."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
