"""Placeholder benchmark: what the ThumbHash placeholder adds to the job of a 12 MP JPEG.

What it measures
    In process, no server, set up as a worker is (one libvips thread, no operation cache): a
    12 MP phone-sized JPEG (4032x3024 with grain, EXIF orientation 6) through the image
    pipeline, ``--rounds`` times each way, the ways interleaved (the order flips every round):

    * with placeholders, as the service runs it;
    * without: the same job with the placeholder step left out.

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
from collections.abc import Iterator
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
def without_placeholders() -> Iterator[None]:
    """The pipeline with its placeholder step left out (the result passed through)."""
    attach = placeholders.attach
    placeholders.attach = lambda result, make: result  # type: ignore[assignment]
    try:
        yield
    finally:
        placeholders.attach = attach


def run_job(photo: Path, folder: Path, job: str) -> tuple[float, TaskResult]:
    """Seconds one job takes, and its result."""
    operations, resize = JOBS[job]
    folder.mkdir(parents=True)
    spec = TaskSpec(
        media_id="bench", media_type="image", content_type="image/jpeg", extension="jpg",
        source=str(photo), work_dir=str(folder), operations=operations, resize=resize,
    )  # fmt: skip
    started = time.perf_counter()
    result = images.process(spec)
    elapsed = time.perf_counter() - started
    if result.error:
        raise BenchError(f"the {job} job failed: {result.error}")
    return elapsed, result


def measure(tmp: Path, rounds: int) -> dict[str, Any]:
    pyvips.concurrency_set(1)  # as a worker (tasks.init_worker)
    pyvips.cache_set_max(0)
    photo = make_photo(tmp)
    times: dict[str, dict[str, list[float]]] = {job: {"with": [], "without": []} for job in JOBS}
    step = 0
    for round_ in range(rounds + 1):  # the first round warms up and is not counted
        for job in JOBS:
            ways = ["with", "without"] if round_ % 2 else ["without", "with"]
            for way in ways:
                step += 1
                context = without_placeholders() if way == "without" else contextlib.nullcontext()
                with context:
                    elapsed, result = run_job(photo, tmp / f"job-{step}", job)
                if way == "with" and "placeholder" not in result.info:
                    raise BenchError(f"the {job} job made no placeholder")
                if round_:
                    times[job][way].append(elapsed)
    report: dict[str, Any] = {"rounds": rounds, "load_average": os.getloadavg()[0], "jobs": {}}
    for job, ways in times.items():
        with_ms = statistics.median(ways["with"]) * 1000
        without_ms = statistics.median(ways["without"]) * 1000
        report["jobs"][job] = {
            "with_ms": round(with_ms, 1),
            "without_ms": round(without_ms, 1),
            "extra_ms": round(with_ms - without_ms, 1),
            "extra_share": round((with_ms - without_ms) / without_ms, 4),
        }
    return report


def show(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report)
    lines = [
        f"12 MP JPEG (4032x3024, orientation 6), median of {report['rounds']} rounds, "
        f"load average {report['load_average']:.2f} at the end",
        f"{'job':<20} {'with ms':>9} {'without ms':>11} {'extra ms':>9} {'extra':>7}",
    ]
    for job, figures in report["jobs"].items():
        lines.append(
            f"{job:<20} {figures['with_ms']:>9.1f} {figures['without_ms']:>11.1f} "
            f"{figures['extra_ms']:>9.1f} {figures['extra_share']:>7.1%}"
        )
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
