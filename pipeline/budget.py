"""What one job may cost, checked before decoding, and the CPU-time limit that holds it there.

Everything here runs in the worker processes. The header checks refuse inputs whose cost is
visible up front (pixels over all frames, video pixels, duration and frames, PDF pages and
page size); the CPU limit bounds what no header tells (an SVG filter, a slow codec).

The CPU limit is ``RLIMIT_CPU``, which counts the whole worker process and never resets, so
each task sets the soft limit to what the process has used so far plus the task's budget
(the hard limit is left alone: a process can never raise it again). Reaching it sends
SIGXCPU, which becomes a :class:`Refused` in the task. A task stuck inside one long C call
(libvips) cannot take that exception, so a watchdog thread ends the worker a second later,
after leaving the reason in the job's work folder, where the dispatcher finds it: either
way the job fails at once, without a retry. Child processes (ffmpeg, the SVG renderer) get
their own limit of what is left of the budget.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

from mediasvc.pipeline.tasks import JobRefused, Limits, Refused, TaskSpec

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
MARKER = ".cpu-limit"  # in the job's work folder: why the watchdog ended the worker
_WATCHDOG_GRACE = 1.0  # CPU seconds past the budget before the watchdog ends the worker
_WATCHDOG_PERIOD = 0.2
_active: CpuBudget | None = None  # a worker runs one task at a time


class CpuLimitExceeded(JobRefused):
    """The job used up its CPU-time budget."""


# ---- checks before decoding


def check_image_header(spec: TaskSpec, width: int, page_height: int, pages: int) -> None:
    """Refuse a PDF, still image or animation whose header already shows it is too costly."""
    limits = spec.limits
    if spec.content_type == "application/pdf":
        _check_pdf(limits, width, page_height, pages)
        return
    pixels = width * page_height
    # An SVG is drawn at the size asked for, never at its declared one: that costs nothing.
    if spec.extension != "svg" and pixels > limits.max_pixels:
        raise Refused(
            f"Image is {width}x{page_height} pixels, over the limit of {limits.max_pixels} pixels"
        )
    if pages > limits.max_frames:
        raise Refused(f"Animation has {pages} frames, over the limit of {limits.max_frames}")
    if pages > 1 and pixels * pages > limits.max_animation_pixels:
        raise Refused(
            f"Animation has {pages} frames of {width}x{page_height} pixels "
            f"({pixels * pages} in all), over the limit of {limits.max_animation_pixels} pixels"
        )


def _check_pdf(limits: Limits, width: int, height: int, pages: int) -> None:
    if pages > limits.max_pdf_pages:
        raise Refused(f"PDF has {pages} pages, over the limit of {limits.max_pdf_pages} pages")
    if width * height > limits.max_pdf_page_pixels:
        raise Refused(
            f"PDF page is {width}x{height} points, over the limit of "
            f"{limits.max_pdf_page_pixels} pixels at 72 dpi"
        )


def check_video(streams: list[dict[str, Any]], container: dict[str, Any], limits: Limits) -> None:
    """Refuse a video whose frame size, duration or frame count (from ffprobe) is over budget."""
    container_duration = _number(container.get("duration"))
    if container_duration is not None and container_duration > limits.max_video_duration:
        raise Refused(
            f"Video lasts {container_duration:.0f} s, over the limit of "
            f"{limits.max_video_duration:.0f} s"
        )
    for stream in streams:
        if stream.get("codec_type") == "video":
            _check_video_stream(stream, container_duration, limits)


def _check_video_stream(stream: dict[str, Any], duration: float | None, limits: Limits) -> None:
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width * height > limits.max_video_pixels:
        raise Refused(
            f"Video is {width}x{height} pixels per frame, over the limit of "
            f"{limits.max_video_pixels} pixels"
        )
    stream_duration = _number(stream.get("duration"))
    if stream_duration is not None and stream_duration > limits.max_video_duration:
        raise Refused(
            f"Video lasts {stream_duration:.0f} s, over the limit of "
            f"{limits.max_video_duration:.0f} s"
        )
    frames = _frame_count(stream, stream_duration or duration)
    if frames is not None and frames > limits.max_video_frames:
        raise Refused(
            f"Video has {frames} frames, over the limit of {limits.max_video_frames} frames"
        )


def _frame_count(stream: dict[str, Any], duration: float | None) -> int | None:
    """Frames as the container counts them, else duration x frame rate; None if unknown."""
    counted = str(stream.get("nb_frames") or "")
    if counted.isdigit() and int(counted) > 0:
        return int(counted)
    rate = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if rate is None or duration is None:
        return None
    return math.ceil(duration * rate)


def _rate(value: Any) -> float | None:
    try:
        rate = float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---- the CPU-time limit


def job_cpu_seconds(spec: TaskSpec) -> float:
    """The CPU budget of one job: SVGs (whose cost no header shows) get a tighter one."""
    limits = spec.limits
    if spec.extension == "svg":
        if limits.cpu_limit <= 0:  # no job limit: the SVG one still holds
            return limits.svg_cpu_limit
        return min(limits.cpu_limit, limits.svg_cpu_limit)
    return limits.cpu_limit


class CpuBudget:
    """CPU seconds one task may use: the worker's own and its children's together."""

    def __init__(self, seconds: float, work_dir: str) -> None:
        self.seconds = seconds
        self.work_dir = work_dir
        self._self_start = _self_cpu()
        self._children_start = _children_cpu()

    def used(self) -> float:
        """CPU seconds spent on this task so far (children counted once they have ended)."""
        own = _self_cpu() - self._self_start
        return own + _children_cpu() - self._children_start

    def remaining(self) -> float:
        """CPU seconds left; refuses the task when none are."""
        left = self.seconds - self.used()
        if left <= 0:
            raise self.exceeded()
        return left

    def exceeded(self) -> CpuLimitExceeded:
        """The refusal of a task over its budget."""
        return CpuLimitExceeded(f"Processing used more than {self.seconds:g} s of CPU")

    def arm(self) -> None:
        """Set this process's soft limit to what it has used plus what the task has left."""
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        limit = math.ceil(_self_cpu() + self.remaining())
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))


@contextlib.contextmanager
def cpu_limit(seconds: float, work_dir: str) -> Iterator[CpuBudget]:
    """Hold the task run inside to `seconds` of CPU time (0: no limit)."""
    global _active
    if seconds <= 0:
        yield CpuBudget(math.inf, work_dir)
        return
    budget = CpuBudget(seconds, work_dir)
    _active = budget
    try:
        budget.arm()
        yield budget
    finally:
        _active = None
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


def install() -> None:
    """In a new worker: SIGXCPU becomes a refusal, and a watchdog ends a task stuck in C."""
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    threading.Thread(target=_watchdog, name="cpu-watchdog", daemon=True).start()


def _on_sigxcpu(signum: int, frame: Any) -> None:
    budget = _active
    if budget is not None:  # a late signal after the task ended is ignored
        raise budget.exceeded()


def _watchdog() -> None:
    while True:
        time.sleep(_WATCHDOG_PERIOD)
        budget = _active
        if budget is not None and budget.used() > budget.seconds + _WATCHDOG_GRACE:
            _leave_marker(budget)
            os._exit(70)


def _leave_marker(budget: CpuBudget) -> None:
    with contextlib.suppress(OSError), open(os.path.join(budget.work_dir, MARKER), "w") as marker:
        marker.write(str(budget.exceeded()))


def read_marker(work_dir: str) -> str | None:
    """The reason a worker was ended for its CPU budget, if it was (read by the dispatcher)."""
    try:
        with open(os.path.join(work_dir, MARKER)) as marker:
            return marker.read().strip() or None
    except OSError:
        return None


def run_child(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run a helper program of the job (ffmpeg, ffprobe, the SVG renderer): an argument list,
    never a shell; killed with its worker; stopped by the kernel at what is left of the job's
    CPU budget (then CpuLimitExceeded). Raises subprocess.TimeoutExpired past `timeout`."""
    child = ChildLimit()
    result = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        preexec_fn=child.preexec(_die_with_parent),
        check=False,
    )
    child.check(result.returncode)
    return result


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ChildLimit:
    """The CPU limit of one child process: what the task has left when the child starts."""

    def __init__(self) -> None:
        self.budget = _active
        # Rounded down (the kernel counts whole seconds): a child never gets more than is left.
        self.seconds = max(1, int(self.budget.remaining())) if self.budget else 0
        self._children_start = _children_cpu()

    def preexec(self, then: Callable[[], None]) -> Callable[[], None]:
        """A preexec_fn that sets the child's limit, then runs `then`."""
        seconds = self.seconds

        def limit_child() -> None:
            if seconds > 0:
                resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
            then()

        return limit_child

    def check(self, returncode: int) -> None:
        """After the child ended: refuse the task if the child ran into its limit."""
        if self.budget is None:
            return
        if returncode != 0 and self._hit_limit(returncode):
            raise self.budget.exceeded()
        self.budget.arm()  # the child's time counts against what the worker has left

    def _hit_limit(self, returncode: int) -> bool:
        # The kernel sends SIGXCPU at the soft limit and SIGKILL at the hard one; ffmpeg
        # catches SIGXCPU and exits 255. The rusage the parent sees runs a little behind
        # the time the limit is checked against, hence the margin.
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return True
        return _children_cpu() - self._children_start >= 0.8 * self.seconds


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
