"""Placeholder benchmark: what the ThumbHash placeholder adds to the job of a 12 MP JPEG.

What it measures
    In process, no server, set up as a worker is (one libvips thread, no operation cache): a
    12 MP phone-sized JPEG (4032x3024 with grain, EXIF orientation 6) through the image
    pipeline, ``--rounds`` times each way, the ways interleaved (the order flips every round):

    * with placeholders, as the service runs it;
    * without: the same job with the placeholder step left out.

    Each job is timed in CPU seconds of this process (``time.process_time``: what a worker
    spends, whatever else the machine runs) and in wall-clock seconds, and the placeholder
    step inside the jobs with it in CPU seconds: on a busy machine the difference of two
    jobs of seconds is noise around a step of tens of milliseconds, the step's own time is
    not.

    Three jobs: ``thumbnail+optimize`` (what an upload gets by default), ``thumbnail`` (the
    placeholder is made from the thumbnail just written) and ``resize`` to 800x800 (no
    thumbnail: the placeholder comes from a shrink-on-load of the original). The report gives
    the median time of each way and the difference, per job and as a share of it.

Usage::

    .venv/bin/python bench/placeholder.py [--rounds 10] [--json] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyvips
from common import BenchError, run_bench

from mediasvc.pipeline import images, placeholders
from mediasvc.pipeline.tasks import TaskResult, TaskSpec

JOBS: dict[str, tuple[tuple[str, ...], tuple[int, int] | None]] = {
    "thumbnail+optimize": (("thumbnail", "optimize"), None),
    "thumbnail": (("thumbnail",), None),
    "resize 800x800": (("resize",), (800, 800)),
}


def make_photo(folder: Path) -> Path:
    """4032x3024 with grain (a few MB, as a phone's), stored with EXIF orientation 6."""
    plain = folder / "plain.jpg"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=4032x3024:rate=1", "-vf", "noise=alls=25:allf=t",
         "-frames:v", "1", "-q:v", "3", str(plain)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    image = pyvips.Image.new_from_file(str(plain)).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    path = folder / "photo.jpg"
    image.jpegsave(str(path), Q=90)
    return path


@contextlib.contextmanager
def placeholder_step(spent: list[float] | None) -> Iterator[None]:
    """The pipeline with its placeholder step timed (CPU seconds into `spent`), or left out
    (the result passed through) when `spent` is None."""
    attach = placeholders.attach

    def step(result: TaskResult, make: Callable[[], placeholders.Placeholder | None]) -> TaskResult:
        if spent is None:
            return result
        cpu = time.process_time()
        try:
            return attach(result, make)
        finally:
            spent.append(time.process_time() - cpu)

    placeholders.attach = step
    try:
        yield
    finally:
        placeholders.attach = attach


def run_job(photo: Path, folder: Path, job: str) -> tuple[float, float, TaskResult]:
    """CPU and wall-clock seconds one job takes, and its result."""
    operations, resize = JOBS[job]
    folder.mkdir(parents=True)
    spec = TaskSpec(
        media_id="bench", media_type="image", content_type="image/jpeg", extension="jpg",
        source=str(photo), work_dir=str(folder), operations=operations, resize=resize,
    )  # fmt: skip
    cpu, wall = time.process_time(), time.perf_counter()
    result = images.process(spec)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if result.error:
        raise BenchError(f"the {job} job failed: {result.error}")
    return cpu, wall, result


def measure(tmp: Path, rounds: int) -> dict[str, Any]:
    pyvips.concurrency_set(1)  # as a worker (tasks.init_worker)
    pyvips.cache_set_max(0)
    photo = make_photo(tmp)
    ways = ("with", "without")
    times: dict[str, dict[str, list[tuple[float, float]]]] = {
        job: {way: [] for way in ways} for job in JOBS
    }
    steps: dict[str, list[float]] = {job: [] for job in JOBS}
    step = 0
    for round_ in range(rounds + 1):  # the first round warms up and is not counted
        for job in JOBS:
            for way in ways if round_ % 2 else ways[::-1]:
                step += 1
                spent: list[float] = []
                with placeholder_step(spent if way == "with" else None):
                    cpu, wall, result = run_job(photo, tmp / f"job-{step}", job)
                if way == "with" and "placeholder" not in result.info:
                    raise BenchError(f"the {job} job made no placeholder")
                if round_:
                    times[job][way].append((cpu, wall))
                    steps[job] += spent
    report: dict[str, Any] = {"rounds": rounds, "load_average": os.getloadavg()[0], "jobs": {}}
    for job, measured in times.items():
        report["jobs"][job] = {
            clock: _figures(*(median_ms(measured[way], index) for way in ways))
            for index, clock in enumerate(("cpu", "wall"))
        }
        report["jobs"][job]["step_cpu_ms"] = round(statistics.median(steps[job]) * 1000, 1)
    return report


def median_ms(samples: list[tuple[float, float]], index: int) -> float:
    return statistics.median(sample[index] for sample in samples) * 1000


def _figures(with_ms: float, without_ms: float) -> dict[str, float]:
    return {
        "with_ms": round(with_ms, 1),
        "without_ms": round(without_ms, 1),
        "extra_ms": round(with_ms - without_ms, 1),
        "extra_share": round((with_ms - without_ms) / without_ms, 4),
    }


def show(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report)
    lines = [
        f"12 MP JPEG (4032x3024, orientation 6), median of {report['rounds']} rounds, "
        f"load average {report['load_average']:.2f} at the end",
        f"{'job':<20} {'clock':<5} {'with ms':>9} {'without ms':>11} {'extra ms':>9} {'extra':>7}",
    ]
    for job, clocks in report["jobs"].items():
        for clock in ("cpu", "wall"):
            figures = clocks[clock]
            lines.append(
                f"{job:<20} {clock:<5} {figures['with_ms']:>9.1f} {figures['without_ms']:>11.1f} "
                f"{figures['extra_ms']:>9.1f} {figures['extra_share']:>7.1%}"
            )
    jobs = report["jobs"].items()
    steps = ", ".join(f"{job} {clocks['step_cpu_ms']:.1f}" for job, clocks in jobs)
    lines.append(f"the placeholder step alone, CPU ms (median): {steps}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each job")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--workdir", help="where the temporary folder goes")
    args = parser.parse_args(argv)
    return run_bench(
        "placeholder",
        args.workdir,
        lambda tmp: measure(tmp, args.rounds),
        lambda report: show(report, args.json),
    )


if __name__ == "__main__":
    sys.exit(main())
