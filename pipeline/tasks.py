"""What a worker process runs: one job over local files, returning a small result.

These are plain module-level functions over paths and a frozen spec, so they pickle by
name into the worker processes. Library errors are caught at this edge and turned into a
reason string; only crashes and timeouts escape (and those the pool handles).
The heavy libraries (pyvips) are imported inside the workers only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Processing limits from the settings, fixed for the life of a job."""

    thumbnail_size: int = 320
    max_pixels: int = 100_000_000
    max_frames: int = 1000
    video_max_height: int = 720
    waveform_size: str = "800x160"
    timeout: float = 300.0
    max_animation_pixels: int = 400_000_000
    max_video_pixels: int = 35_389_440
    max_video_duration: float = 3600.0
    max_video_frames: int = 216_000
    max_pdf_pages: int = 2000
    max_pdf_page_pixels: int = 25_000_000
    svg_render_size: int = 2048
    cpu_limit: float = 120.0
    svg_cpu_limit: float = 10.0


@dataclass(frozen=True)
class TaskSpec:
    """One job for a worker: the original on disk, where to write, and what to make."""

    media_id: str
    media_type: str
    content_type: str
    extension: str
    source: str
    work_dir: str
    operations: tuple[str, ...]
    resize: tuple[int, int] | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Variant:
    """A derived file the worker wrote into the work folder."""

    name: str
    path: str
    content_type: str
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class TaskResult:
    """What came of a job: derived files and facts about the original, and the reason it
    failed, if it did (then `variants` holds what the operations that worked made)."""

    variants: tuple[Variant, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Refused(Exception):
    """The input cannot or must not be processed; the message is the reason shown to users."""


class JobRefused(Refused):
    """A refusal of the whole job, not of one operation (its CPU budget is spent): the
    operations after it are not tried, and the reason is shown as it is."""


# One operation of a job: its name and what makes its variants (raising Refused).
Operation = tuple[str, Callable[[], list[Variant]]]


def run_operations(operations: list[Operation], info: dict[str, Any]) -> TaskResult:
    """Run each operation on its own, so one that fails keeps the others' variants.

    The error names the operations that failed, each with its reason.
    """
    variants: list[Variant] = []
    failures: dict[str, list[str]] = {}
    for name, make in operations:
        try:
            variants += make()
        except JobRefused as exc:
            return TaskResult(variants=tuple(variants), info=info, error=str(exc))
        except Refused as exc:
            failures.setdefault(str(exc), []).append(name)
        except MemoryError:
            failures.setdefault("processing ran out of memory", []).append(name)
    error = "; ".join(f"{', '.join(names)} failed: {reason}" for reason, names in failures.items())
    return TaskResult(variants=tuple(variants), info=info, error=error or None)


def init_worker(memory_limit: int, server_pid: int) -> None:
    """Pool initializer: one libvips thread per worker, an optional address-space limit,
    and a watch that ends the worker when its server is gone."""
    from mediasvc.pipeline import budget

    threading.Thread(target=_exit_with_server, args=(server_pid,), daemon=True).start()
    budget.install()
    os.environ["VIPS_CONCURRENCY"] = "1"
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    import pyvips

    pyvips.cache_set_max(0)


def _exit_with_server(server_pid: int) -> None:
    # Workers are children of the forkserver, not of the server, and hold both ends of
    # their task queue: if the server is killed outright they would wait forever.
    while True:
        time.sleep(1)
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            forkserver = os.getppid()
            if forkserver not in (1, server_pid):
                with contextlib.suppress(OSError):
                    os.kill(forkserver, signal.SIGTERM)
            os._exit(1)


def run_task(spec: TaskSpec) -> TaskResult:
    """Entry point in the worker: dispatch on the media type within the job's CPU budget;
    refusals (a budget overrun among them) become reasons."""
    from mediasvc.pipeline import budget

    try:
        with budget.cpu_limit(budget.job_cpu_seconds(spec), spec.work_dir):
            return _run(spec)
    except Refused as exc:
        return TaskResult(error=str(exc))
    except MemoryError:
        return TaskResult(error="processing ran out of memory")


def _run(spec: TaskSpec) -> TaskResult:
    if spec.media_type == "image":
        from mediasvc.pipeline import images

        return images.process(spec)
    if spec.media_type in ("video", "audio"):
        from mediasvc.pipeline import av

        return av.process(spec)
    if spec.content_type == "application/pdf":
        from mediasvc.pipeline import images

        return images.pdf_preview(spec)
    return TaskResult()
