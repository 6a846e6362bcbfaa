"""Concurrent-upload benchmark: bursts of uploads to the service and to a bare Tornado
streaming handler, in one run.

What it measures
    * Bursts of 64 and 256 uploads of a 5 MiB JPEG (a real JPEG header padded with random
      bytes) started at the same moment, each on its own connection, by clients that stream
      the file with ``socket.sendfile`` (``common.post_file``), to
      ``POST /api/v1/drf/media/upload/`` of the service with its default settings
      (``max_concurrent_uploads`` 32, ``upload_slot_wait`` 10 s) and processing off.
    * The same bursts against the baseline of ``bench/upload.py``: a bare Tornado
      ``@stream_request_body`` handler that parses the multipart body and writes the file,
      with no limit on concurrency.
    * The same bursts against that handler taking a sha256 of each file as it writes it, as
      the service does (``hashing``). No target: its ratio shows how much of the gap to the
      bare handler is the hash, which on a machine with few cores competes with everything
      else for the CPU.
    * For each burst: transport errors by kind (a reset, a connection closed without an
      answer, a send that failed), answers by status, whether every answer is readable (a
      201 with the right ``file_size``, or a 429 JSON error with ``Retry-After``), the
      aggregate MB/s of the stored uploads over the burst's wall time, and p50/p99 of the
      seconds an upload took until its 201, and the CPU seconds the server spent on the burst
      (its process and its children: the service's embedded database), per MB stored.

Targets
    zero transport errors, every answer a 201 or a readable 429; at 64 concurrent uploads
    the service's aggregate MB/s at least 0.7 of the baseline's and its p99 at most 3 x its
    p50 (the uploads past the 32 slots wait for one, so twice the p50 is expected).

Usage::

    .venv/bin/python bench/concurrency.py [--concurrency 64,256] [--size-mb 5] [--json]
        [--workdir DIR]

Figures use MB = 2**20 bytes. The process exits 0 once it has measured something: a missed
target is reported as MISSED, not as a failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import magic
from common import (
    LOG_TAIL_LINES,
    BenchError,
    free_port,
    log_tail,
    post_file,
    progress,
    request,
    run_bench,
    running,
    service_command,
    service_default,
    service_env,
    verdict,
    wait_until_answers,
)
from upload import baseline_command

MB = 1024 * 1024
API = "/api/v1/drf/media"
UPLOAD_PATH = f"{API}/upload/"
DEFAULT_CONCURRENCY = (64, 256)
DEFAULT_SIZE_MB = 5.0
DEFAULT_REPEAT = 3
RATIO_TARGET = 0.7
TAIL_TARGET = 3.0
TARGET_CONCURRENCY = 64
BASELINES = ("baseline", "hashing")  # the bare handler, and the same hashing what it writes
NAMES = ("service", *BASELINES)
UPLOAD_TIMEOUT = 180.0
SLOTS = service_default("max_concurrent_uploads")
SLOT_WAIT = service_default("upload_slot_wait")
SERVICE_SETTINGS = {"MEDIASVC_PROCESSING_ENABLED": "false"}


def make_test_image(path: Path, size: int) -> None:
    """A `size`-byte file that sniffs as JPEG: a small real JPEG, padded with random bytes."""
    small = path.with_name("small.jpg")
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", "testsrc=size=64x48:rate=1", "-frames:v", "1", str(small)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise BenchError("ffmpeg is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"ffmpeg failed: {exc.stderr.decode(errors='replace')}") from None
    head = small.read_bytes()
    small.unlink()
    with open(path, "wb") as out:
        out.write(head + os.urandom(size - len(head)))
        os.fsync(out.fileno())  # its writeback must not land in the middle of a burst
    sniffed = magic.from_file(str(path), mime=True)
    if sniffed != "image/jpeg":
        raise BenchError(f"the test file sniffs as {sniffed}, not image/jpeg")


@dataclass
class Target:
    """One server to upload to; `received_dir` is where the baseline puts what it receives."""

    name: str
    port: int
    path: str
    headers: dict[str, str]
    fields: dict[str, str]
    received_dir: Path | None = None
    pid: int | None = None  # the server process, whose CPU time a burst reports


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and of its child processes (Linux /proc)."""
    if pid is None:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        with suppress(OSError, IndexError, ValueError), open(f"/proc/{candidate}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _children(pid: int) -> list[int]:
    found = []
    with suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    return [*found, *(grandchild for child in found for grandchild in _children(child))]


@dataclass
class Outcome:
    """One upload of a burst: its seconds, its answer (or the error instead), its verdict."""

    seconds: float
    status: int | None = None
    error: str | None = None
    readable: bool = False
    media_id: str | None = None


def judge(status: int, body: bytes, headers: dict[str, str], size: int) -> tuple[bool, Any]:
    """Whether an answer is a 201 with the right file_size or a 429 a client can act on."""
    answer: Any = None
    with suppress(ValueError):
        answer = json.loads(body)
    if not isinstance(answer, dict):
        return False, None
    if status == 201:
        return answer.get("file_size") == size, answer.get("id")
    if status == 429:
        return isinstance(answer.get("error"), str) and "retry-after" in headers, None
    return False, None


def one_upload(target: Target, path: Path, start: threading.Barrier) -> Outcome:
    """Wait for the burst to start, then stream the file and read the answer."""
    start.wait()
    started = time.perf_counter()
    try:
        answer = post_file(
            target.port, target.path, path, target.fields, target.headers, "image/jpeg",
            UPLOAD_TIMEOUT,
        )  # fmt: skip
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(time.perf_counter() - started, error=type(exc).__name__)
    seconds = time.perf_counter() - started
    readable, media_id = judge(answer.status, answer.body, answer.headers, path.stat().st_size)
    error = f"send: {type(answer.send_error).__name__}" if answer.send_error else None
    return Outcome(seconds, answer.status, error, readable, media_id)


@dataclass
class Burst:
    """Every upload of one burst against one target."""

    target: str
    concurrency: int
    file_bytes: int
    wall_seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    cpu_seconds: float = float("nan")

    @property
    def errors(self) -> Counter[str]:
        """Transport errors by kind."""
        return Counter(o.error for o in self.outcomes if o.error)

    @property
    def statuses(self) -> Counter[int]:
        """Answers by status."""
        return Counter(o.status for o in self.outcomes if o.status is not None)

    @property
    def unreadable(self) -> int:
        """Answers that are neither a good 201 nor a readable 429."""
        return sum(1 for o in self.outcomes if o.status is not None and not o.readable)

    @property
    def stored(self) -> list[float]:
        """Seconds of the uploads that got their 201, sorted."""
        return sorted(o.seconds for o in self.outcomes if o.status == 201 and o.readable)

    @property
    def cpu_ms_per_mb(self) -> float:
        """The server's CPU milliseconds per MB stored."""
        stored_mb = len(self.stored) * self.file_bytes / MB
        return 1000 * self.cpu_seconds / stored_mb if stored_mb else float("nan")

    @property
    def mb_s(self) -> float:
        """Aggregate throughput: the bytes stored over the burst's wall time."""
        return len(self.stored) * self.file_bytes / MB / self.wall_seconds

    def percentile(self, fraction: float) -> float:
        """A percentile of the stored uploads' seconds (nearest rank)."""
        stored = self.stored
        if not stored:
            return float("nan")
        return stored[min(len(stored) - 1, max(0, round(fraction * len(stored)) - 1))]

    @property
    def clean(self) -> bool:
        """No transport error, every answer readable, every upload answered."""
        answered = sum(self.statuses.values())
        return not self.errors and not self.unreadable and answered == self.concurrency

    def as_json(self) -> dict[str, Any]:
        """The figures of this burst, for `--json`."""
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "wall_seconds": self.wall_seconds,
            "errors": dict(self.errors),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "unreadable": self.unreadable,
            "mb_s": self.mb_s,
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
            "cpu_seconds": self.cpu_seconds,
            "clean": self.clean,
        }


def burst(target: Target, path: Path, concurrency: int) -> Burst:
    """`concurrency` uploads started together, each on its own connection and thread."""
    start = threading.Barrier(concurrency + 1)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(one_upload, target, path, start) for _ in range(concurrency)]
        cpu_before = cpu_seconds(target.pid)
        start.wait()
        began = time.perf_counter()
        outcomes = [future.result() for future in futures]
        wall = time.perf_counter() - began
        cpu = cpu_seconds(target.pid) - cpu_before
    return Burst(target.name, concurrency, path.stat().st_size, wall, outcomes, cpu)


def clean_up(target: Target, result: Burst) -> None:
    """Remove what a burst stored, so that the next one starts from the same state."""
    if target.received_dir is not None:
        for path in target.received_dir.iterdir():
            path.unlink()
        return
    for outcome in result.outcomes:
        if outcome.media_id:
            status, _ = request(target.port, "DELETE", f"{API}/{outcome.media_id}/", target.headers)
            if status != 204:
                raise BenchError(f"DELETE of a stored upload answered {status}")


def service_target(port: int, secret: str, pid: int | None = None) -> Target:
    """The service's upload endpoint, as a user uploading to their own entity."""
    sub = str(uuid.uuid4())
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    return Target(
        "service", port, UPLOAD_PATH, {"Authorization": f"Bearer {token}"},
        {"entity_type": "user", "entity_id": sub}, pid=pid,
    )  # fmt: skip


def baseline_target(name: str, port: int, received_dir: Path, pid: int | None = None) -> Target:
    """A baseline's upload endpoint, with the same form fields."""
    fields = {"entity_type": "user", "entity_id": str(uuid.uuid4())}
    return Target(name, port, "/upload/", {}, fields, received_dir, pid)


def run_bursts(targets: list[Target], image: Path, levels: list[int], repeat: int) -> list[Burst]:
    """`repeat` rounds of one burst per level and target; the order flips every round."""
    results = []
    for round_no in range(repeat):
        for concurrency in levels:
            for target in targets if round_no % 2 == 0 else targets[::-1]:
                os.sync()  # no dirty pages of an earlier burst written back in this one
                result = burst(target, image, concurrency)
                clean_up(target, result)
                results.append(result)
                progress(
                    f"  round {round_no + 1} {concurrency:4d} x {target.name:<8}: "
                    f"{result.wall_seconds:6.2f} s, {result.mb_s:7.1f} MB/s, "
                    f"CPU {result.cpu_seconds:5.2f} s, "
                    f"statuses {dict(result.statuses)}, errors {dict(result.errors)}"
                )
    return results


def benchmark(workdir: Path, size: int, levels: list[int], repeat: int) -> list[Burst]:
    """Create the file, start the service and the baselines, run the bursts."""
    image = workdir / "bench.jpg"
    make_test_image(image, size)
    secret = secrets.token_urlsafe(36)
    env = service_env(secret, SERVICE_SETTINGS)
    service_port = free_port()
    service_log = workdir / "service.log"
    try:
        with (
            running(service_command(workdir / "svc", service_port), service_log, env) as service,
            ExitStack() as baselines,
        ):
            progress("starting the service and the baseline servers")
            wait_until_answers(service, service_port, f"{API}/", 401, service_log)
            targets = [service_target(service_port, secret, service.pid)]
            for name in BASELINES:
                targets.append(start_baseline(baselines, name, workdir, env))
            return run_bursts(targets, image, levels, repeat)
    finally:
        tail = log_tail(service_log)
        if tail:
            progress(f"the service logged (last {LOG_TAIL_LINES} lines):\n{tail}")


def start_baseline(stack: ExitStack, name: str, workdir: Path, env: dict[str, str]) -> Target:
    """One baseline server, running until `stack` closes, and its target."""
    port, received_dir, log = free_port(), workdir / name, workdir / f"{name}.log"
    received_dir.mkdir()
    command = baseline_command(port, received_dir, digest=name == "hashing")
    server = stack.enter_context(running(command, log, env))
    wait_until_answers(server, port, "/", 404, log)
    return baseline_target(name, port, received_dir, server.pid)


def best(results: list[Burst], name: str, concurrency: int) -> Burst:
    """The burst of that target and level with the highest MB/s: the least disturbed by the
    neighbours of this machine."""
    return max(
        (r for r in results if r.target == name and r.concurrency == concurrency),
        key=lambda r: r.mb_s,
    )


def median_mb_s(results: list[Burst], name: str, concurrency: int) -> float:
    """Median MB/s over the rounds: how far to trust the best."""
    return statistics.median(
        r.mb_s for r in results if r.target == name and r.concurrency == concurrency
    )


def targets_met(results: list[Burst]) -> dict[str, bool]:
    """Each target and whether it was met: every burst clean; at 64, ratio and tail of the
    best bursts."""
    met = {}
    for name in NAMES:
        for level in sorted({r.concurrency for r in results}):
            bursts = [r for r in results if r.target == name and r.concurrency == level]
            met[f"{name} {level}: no transport error, every answer readable"] = all(
                r.clean for r in bursts
            )
    if any(r.concurrency == TARGET_CONCURRENCY for r in results):
        service = best(results, "service", TARGET_CONCURRENCY)
        baseline = best(results, "baseline", TARGET_CONCURRENCY)
        met[f"service {TARGET_CONCURRENCY}: ratio >= {RATIO_TARGET}"] = (
            service.mb_s >= RATIO_TARGET * baseline.mb_s
        )
        met[f"service {TARGET_CONCURRENCY}: p99 <= {TAIL_TARGET:g} x p50"] = service.percentile(
            0.99
        ) <= TAIL_TARGET * service.percentile(0.5)
    return met


def report(results: list[Burst], repeat: int) -> str:
    """The human-readable report: the best burst of each target and level, with the errors
    and statuses of all its rounds."""
    size = results[0].file_bytes / MB
    lines = [
        f"concurrency benchmark: {size:.1f} MiB uploads, best of {repeat} rounds; the service "
        f"with {SLOTS} upload slots and upload_slot_wait {SLOT_WAIT:g} s",
        f"{'target':<9}{'n':>5}{'wall s':>8}{'MB/s':>8}{'median':>8}{'p50 s':>7}{'p99 s':>7}"
        f"{'CPU s':>7}{'ms/MB':>7}  answers in all rounds (status: count)   transport errors",
    ]
    levels = sorted({r.concurrency for r in results})
    for level in levels:
        for name in NAMES:
            top = best(results, name, level)
            bursts = [r for r in results if r.target == name and r.concurrency == level]
            statuses = sum((r.statuses for r in bursts), Counter[int]())
            errors = sum((r.errors for r in bursts), Counter[str]())
            unreadable = sum(r.unreadable for r in bursts)
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "-"
            if unreadable:
                answers += f" ({unreadable} unreadable)"
            problems = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"
            lines.append(
                f"{name:<9}{level:>5}{top.wall_seconds:>8.2f}{top.mb_s:>8.1f}"
                f"{median_mb_s(results, name, level):>8.1f}{top.percentile(0.5):>7.2f}"
                f"{top.percentile(0.99):>7.2f}{top.cpu_seconds:>7.2f}{top.cpu_ms_per_mb:>7.2f}"
                f"  {answers}   {problems}"
            )
    for level in levels:
        service = best(results, "service", level)
        ratios = []
        for name in BASELINES:
            medians = median_mb_s(results, "service", level) / median_mb_s(results, name, level)
            ratio = service.mb_s / best(results, name, level).mb_s
            ratios.append(f"{name} {ratio:.2f} ({medians:.2f})")
        lines.append(f"ratio at {level} (best bursts; of the medians): {', '.join(ratios)}")
    lines += [f"{name}: {verdict(ok)}" for name, ok in targets_met(results).items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, DEFAULT_CONCURRENCY)),
        help="comma-separated burst sizes (64,256)",
    )
    parser.add_argument("--size-mb", type=float, default=DEFAULT_SIZE_MB, help="MiB per upload (5)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="rounds (3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder (/tmp)")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency takes numbers separated by commas")
    if not args.levels or min(args.levels) < 1 or args.repeat < 1 or not 0 < args.size_mb <= 9:
        parser.error("--concurrency must be positive; --size-mb between 0 and 9 (image limit)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    args = parse_args(argv)

    def show(results: list[Burst]) -> str:
        if not args.json:
            return report(results, args.repeat)
        figures = {"bursts": [r.as_json() for r in results], "targets": targets_met(results)}
        return json.dumps(figures, indent=2)

    return run_bench(
        "concurrency",
        args.workdir,
        lambda tmp: benchmark(tmp, int(args.size_mb * MB), args.levels, args.repeat),
        show,
    )


if __name__ == "__main__":
    sys.exit(main())
