"""Streaming-upload benchmark: the real service against a bare Tornado baseline, in one run.

What it measures
    * Throughput of ``POST /api/v1/drf/media/upload/`` with a ~499 MiB MP4 (a real MP4 header,
      so libmagic sniffs it as video/mp4, padded with random bytes), sent by a streaming client
      that never holds the file in memory (``socket.sendfile``).
    * The same upload against a baseline: a bare Tornado app whose one streaming handler parses
      the multipart body with ``multipart.PushMultipartParser`` and writes the file part to disk
      synchronously. Same HTTPServer ``max_body_size`` and ``chunk_size`` as the service.
    * Resumable uploads: a 400 MiB file of the same kind through the service's tus endpoint
      (``/api/v1/drf/media/tus/``), created, then sent in 5 MiB and in 50 MiB PATCHes on one
      keep-alive connection (sendfile, no checksum), timed until the last PATCH is answered
      (by then the file is checked and stored, as a direct upload's 201 says it is). Target:
      the 50 MiB run at >= 0.8 of the direct upload's throughput.
    * The service's peak RSS growth during each upload (the main process only, not the
      embedded database child): VmHWM after resetting it through ``/proc/<pid>/clear_refs``,
      or VmRSS sampled every 20 ms when the kernel does not allow the reset. The largest
      growth of any run is the figure: memory must stay flat whatever the upload's size.

Why the baseline runs in the same invocation
    These machines are noisy: absolute MB/s change from one minute to the next with the load
    of the neighbours, the page cache and the disk. A ratio to a baseline measured in the same
    run, with the runs interleaved (the order flips every round), is what stays comparable.
    For the same reason every run starts from the same state: dirty pages synced, and the
    file the previous run stored deleted (see `discard_upload`).

Usage::

    .venv/bin/python bench/upload.py [--size-mb 499] [--tus-size-mb 400] [--tus-chunks-mb 5,50]
                                     [--repeat 3] [--json] [--workdir DIR]

Figures use MB = 2**20 bytes, as ``mediasvc.settings`` does. The process always exits 0 once
it has measured something: a missed target is reported as MISSED, not as a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import jwt
import magic
import multipart
import tornado.httpserver
import tornado.web
from common import (
    LOG_TAIL_LINES,
    BenchError,
    free_port,
    log_tail,
    post_file,
    proc_status_kb,
    progress,
    request,
    run_bench,
    running,
    service_command,
    service_default,
    service_env,
    tus_upload,
    verdict,
    wait_until_answers,
)

MB = 1024 * 1024
DEFAULT_SIZE_MB = 499
DEFAULT_TUS_SIZE_MB = 400
DEFAULT_TUS_CHUNKS_MB = "5,50"
DEFAULT_REPEAT = 3
PAD_BLOCK = MB  # the file is padded with one random block, repeated
HTTP_CHUNK_SIZE = service_default("http_chunk_size")
MAX_BODY_SIZE = 600 * MB
API = "/api/v1/drf/media"
UPLOAD_PATH = f"{API}/upload/"
TUS_PATH = f"{API}/tus/"
RATIO_TARGET = 0.75
TUS_RATIO_TARGET = 0.8  # the largest-chunk tus run against the direct upload
RSS_TARGET_MB = 50.0
UPLOAD_TIMEOUT = 600.0
SAMPLE_INTERVAL = 0.02
# Processing is off: this measures the upload path alone, not ffmpeg running beside it.
SERVICE_SETTINGS = {"MEDIASVC_PROCESSING_ENABLED": "false"}


# ---------------------------------------------------------------- the test file


def make_test_video(path: Path, size: int) -> None:
    """Write a `size`-byte file that starts with a real MP4 and is padded with random bytes."""
    small = path.with_name("small.mp4")
    command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", "testsrc=size=64x48:rate=10", "-t", "1", "-pix_fmt", "yuv420p"]
    command += ["-c:v", "libx264", "-movflags", "+faststart", str(small)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise BenchError("ffmpeg is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"ffmpeg failed: {exc.stderr.decode(errors='replace')}") from None
    header = small.read_bytes()[:size]
    small.unlink()
    block = os.urandom(PAD_BLOCK)
    with open(path, "wb") as out:
        out.write(header)
        remaining = size - len(header)
        while remaining > 0:
            remaining -= out.write(block[: min(remaining, len(block))])
        os.fsync(out.fileno())  # its writeback must not land in the middle of a run
    sniffed = magic.from_file(str(path), mime=True)
    if sniffed != "video/mp4":
        raise BenchError(f"the test file sniffs as {sniffed}, not video/mp4")


# ---------------------------------------------------------------- the baseline server


@tornado.web.stream_request_body
class BaselineUploadHandler(tornado.web.RequestHandler):
    """The least a streaming upload can do: parse the multipart body, write the file part;
    with `digest`, also take a sha256 of it, as the service does of every upload."""

    def initialize(self, directory: Path, digest: bool) -> None:
        """Tornado passes the folder the received files go to, and whether to hash them."""
        self.directory = directory
        self.parser: multipart.PushMultipartParser | None = None
        self.out: BinaryIO | None = None
        self.file_size = 0
        self.hasher = hashlib.sha256() if digest else None

    def prepare(self) -> None:
        """Read the boundary before the body arrives."""
        content_type = self.request.headers.get("Content-Type", "")
        _, options = multipart.parse_options_header(content_type)
        if "boundary" not in options:
            raise tornado.web.HTTPError(400, "multipart/form-data without a boundary")
        self.parser = multipart.PushMultipartParser(options["boundary"])

    def data_received(self, chunk: bytes) -> None:
        """Feed the parser; file bytes go to disk synchronously."""
        assert self.parser is not None
        for event in self.parser.parse(chunk):
            if isinstance(event, multipart.MultipartSegment):
                if event.filename is not None:  # open across chunks, closed by _close_file
                    name = self.directory / f"upload-{uuid.uuid4().hex}"
                    self.out = open(name, "wb")  # noqa: SIM115
            elif event is None:
                self._close_file()
            elif self.out is not None:
                if self.hasher is not None:
                    self.hasher.update(event)
                self.out.write(event)
                self.file_size += len(event)

    def post(self) -> None:
        """The body is complete: check the stream ended properly and answer like the service."""
        assert self.parser is not None
        self.parser.close()
        self.set_status(201)
        answer: dict[str, Any] = {"file_size": self.file_size}
        if self.hasher is not None:
            answer["sha256"] = self.hasher.hexdigest()
        self.finish(answer)

    def on_finish(self) -> None:
        """Never leak a file handle, whatever happened."""
        self._close_file()

    def on_connection_close(self) -> None:
        """The client left mid-body."""
        self._close_file()

    def _close_file(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


async def serve_baseline(port: int, directory: Path, digest: bool = False) -> None:
    """Run the baseline app on 127.0.0.1:`port` until SIGTERM or SIGINT."""
    options = {"directory": directory, "digest": digest}
    app = tornado.web.Application([(r"/upload/?", BaselineUploadHandler, options)])
    server = tornado.httpserver.HTTPServer(
        app, max_body_size=MAX_BODY_SIZE, chunk_size=HTTP_CHUNK_SIZE
    )
    server.listen(port, "127.0.0.1")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    server.stop()
    await server.close_all_connections()


# ---------------------------------------------------------------- processes


def baseline_command(port: int, directory: Path, digest: bool = False) -> list[str]:
    """This script in baseline-server mode (hashing what it receives with `digest`)."""
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--baseline-server", str(port), str(directory)]
    return [*command, "--baseline-digest"] if digest else command


# ---------------------------------------------------------------- the streaming client


@dataclass
class Target:
    """One server to upload to; `received_dir` is where the baseline puts what it receives;
    a `chunk_size` makes it a tus upload of `file` in PATCHes of that size."""

    name: str
    port: int
    path: str
    headers: dict[str, str]
    fields: dict[str, str]
    file: Path
    received_dir: Path | None = None
    chunk_size: int | None = None


@dataclass
class Upload:
    """One timed upload: seconds in all, seconds waited for the answer after the last byte."""

    seconds: float
    wait_seconds: float
    answer: dict[str, Any]


def upload(target: Target) -> Upload:
    """Stream the target's file to it (see `common.post_file`); time it until the full answer."""
    if target.chunk_size is not None:
        return upload_tus(target, target.chunk_size)
    path = target.file
    started = time.perf_counter()
    try:
        answer = post_file(
            target.port,
            target.path,
            path,
            target.fields,
            target.headers,
            "video/mp4",
            UPLOAD_TIMEOUT,
        )
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{target.name}: upload failed: {exc!r}") from None
    done = time.perf_counter()
    size = path.stat().st_size
    checked = checked_answer(target.name, answer.status, answer.body, size, answer.send_error)
    return Upload(done - started, done - answer.sent_at, checked)


def upload_tus(target: Target, chunk_size: int) -> Upload:
    """Send the target's file through tus in `chunk_size` PATCHes (see `common.tus_upload`);
    time it until the last PATCH is answered, then check the media it made."""
    path, size = target.file, target.file.stat().st_size
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in {"filename": path.name, **target.fields}.items()
    )
    started = time.perf_counter()
    try:
        answer = tus_upload(
            target.port, target.path, path, metadata, target.headers, chunk_size, UPLOAD_TIMEOUT
        )
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{target.name}: upload failed: {exc!r}") from None
    done = time.perf_counter()
    if answer.status != 204:
        body = answer.body[:500].decode(errors="replace")
        raise BenchError(
            f"{target.name}: status {answer.status} after {answer.requests} requests: {body}"
        )
    media_id = answer.location.rstrip("/").rsplit("/", 1)[-1]
    try:
        status, raw = request(target.port, "GET", f"{API}/{media_id}/", target.headers)
    except OSError as exc:
        raise BenchError(f"{target.name}: GET of the media failed: {exc}") from None
    checked = checked_answer(target.name, 201 if status == 200 else status, raw, size, None)
    return Upload(done - started, done - answer.sent_at, checked)


def checked_answer(
    name: str, status: int, raw_answer: bytes, size: int, sent_error: OSError | None
) -> dict[str, Any]:
    """The JSON of a 201 with the right `file_size`, or a BenchError quoting what came back."""
    answer: Any = None
    with suppress(ValueError):
        answer = json.loads(raw_answer)
    file_size = answer.get("file_size") if isinstance(answer, dict) else None
    if status == 201 and file_size == size:
        return dict(answer)
    problem = f"status {status}" if status != 201 else f"file_size {file_size!r}, not {size}"
    note = f" (while sending: {sent_error})" if sent_error else ""
    raise BenchError(f"{name}: {problem}{note}: {raw_answer[:500].decode(errors='replace')}")


def discard_upload(target: Target, answer: dict[str, Any]) -> None:
    """Remove what one upload stored, so that every run starts from the same state.

    Not only to save disk: in these VMs a run whose page cache has to grow into memory the
    guest never touched before is markedly slower (the host maps it in page by page), so a
    stored file left in the cache slows down whichever run comes next.
    """
    if target.received_dir is not None:
        for path in target.received_dir.iterdir():
            path.unlink()
        return
    try:
        status, _ = request(target.port, "DELETE", f"{API}/{answer['id']}/", target.headers)
    except OSError as exc:
        raise BenchError(f"{target.name}: DELETE of the upload failed: {exc}") from None
    if status != 204:
        raise BenchError(f"{target.name}: DELETE of the upload answered {status}")


# ---------------------------------------------------------------- memory


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS; False when the kernel refuses or ignores it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    # Allow a little slack: the process may allocate between the two reads.
    return proc_status_kb(pid, "VmHWM") <= proc_status_kb(pid, "VmRSS") + 1024


class PeakRss:
    """Peak resident memory of one process over a span, in kB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_kb = 0
        self.method = ""
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        """Note the RSS now and start tracking the peak."""
        self.before_kb = proc_status_kb(self.pid, "VmRSS")
        if reset_peak_rss(self.pid):
            self.method = "VmHWM after clear_refs"
            return
        self.method = f"VmRSS sampled every {SAMPLE_INTERVAL * 1000:.0f} ms"
        self._samples = [self.before_kb]
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def stop(self) -> int:
        """The peak since `start`."""
        if self._sampler is None:
            return proc_status_kb(self.pid, "VmHWM")
        self._stop.set()
        self._sampler.join()
        return max(self._samples)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            try:
                self._samples.append(proc_status_kb(self.pid, "VmRSS"))
            except (OSError, BenchError):
                return  # the process is gone; the uploads will fail loudly


# ---------------------------------------------------------------- the benchmark


@dataclass
class Results:
    """Everything the report prints; times per target name, in run order."""

    file_bytes: int
    repeat: int
    tus_file_bytes: int = 0
    tus_names: list[str] = field(default_factory=list)  # by chunk size, smallest first
    seconds: dict[str, list[float]] = field(default_factory=dict)
    wait_seconds: dict[str, list[float]] = field(default_factory=dict)
    rss_growth_by_target_mb: dict[str, float] = field(default_factory=dict)  # largest run's
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_method: str = ""

    def add(self, name: str, run: Upload) -> None:
        """Record one run."""
        self.seconds.setdefault(name, []).append(run.seconds)
        self.wait_seconds.setdefault(name, []).append(run.wait_seconds)

    def add_rss(self, name: str, before_kb: int, peak_kb: int, method: str) -> None:
        """Record one run's RSS: its growth, and the peak of all runs."""
        growth = (peak_kb - before_kb) / 1024
        previous = self.rss_growth_by_target_mb.get(name, growth)
        self.rss_growth_by_target_mb[name] = max(previous, growth)
        if not self.rss_method:
            self.rss_before_mb = before_kb / 1024
        self.rss_peak_mb = max(self.rss_peak_mb, peak_kb / 1024)
        self.rss_method = method

    def bytes_of(self, name: str) -> int:
        """The size of the file the target was sent."""
        return self.tus_file_bytes if name in self.tus_names else self.file_bytes

    def best_mb_s(self, name: str) -> float:
        """Throughput of the fastest run."""
        return self.bytes_of(name) / MB / min(self.seconds[name])

    def median_mb_s(self, name: str) -> float:
        """Throughput of the median run."""
        return self.bytes_of(name) / MB / statistics.median(self.seconds[name])

    def median_wait(self, name: str) -> float:
        """Median seconds between the last byte sent and the full answer."""
        return statistics.median(self.wait_seconds[name])

    @property
    def ratio(self) -> float:
        """Service over baseline, best runs: the figure the target is about."""
        return self.best_mb_s("service") / self.best_mb_s("baseline")

    @property
    def median_ratio(self) -> float:
        """Service over baseline, median runs: how far to trust `ratio`."""
        return self.median_mb_s("service") / self.median_mb_s("baseline")

    @property
    def tus_ratio(self) -> float:
        """The largest-chunk tus run over the direct upload, best runs."""
        return self.best_mb_s(self.tus_names[-1]) / self.best_mb_s("service")

    @property
    def tus_median_ratio(self) -> float:
        """The same, of the medians."""
        return self.median_mb_s(self.tus_names[-1]) / self.median_mb_s("service")

    @property
    def rss_growth_mb(self) -> float:
        """The largest RSS growth of the service during any one upload."""
        service = [v for k, v in self.rss_growth_by_target_mb.items() if k != "baseline"]
        return max(service, default=0.0)

    def as_json(self) -> dict[str, Any]:
        """The figures, for `--json`."""
        throughput = {
            name: {"best": self.best_mb_s(name), "median": self.median_mb_s(name)}
            for name in self.seconds
        }
        return {
            **asdict(self),
            "file_mb": self.file_bytes / MB,
            "mb_s": throughput,
            "ratio": self.ratio,
            "median_ratio": self.median_ratio,
            "ratio_target": RATIO_TARGET,
            "ratio_ok": self.ratio >= RATIO_TARGET,
            **self._tus_json(),
            "rss_growth_mb": self.rss_growth_mb,
            "rss_target_mb": RSS_TARGET_MB,
            "rss_ok": self.rss_growth_mb < RSS_TARGET_MB,
        }

    def _tus_json(self) -> dict[str, Any]:
        if not self.tus_names:
            return {}
        return {
            "tus_ratio": self.tus_ratio,
            "tus_median_ratio": self.tus_median_ratio,
            "tus_ratio_target": TUS_RATIO_TARGET,
            "tus_ratio_ok": self.tus_ratio >= TUS_RATIO_TARGET,
        }


def service_target(port: int, secret: str, video: Path) -> Target:
    """The service's upload endpoint, as a user uploading to their own entity."""
    sub = str(uuid.uuid4())
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    return Target(
        name="service",
        port=port,
        path=UPLOAD_PATH,
        headers={"Authorization": f"Bearer {token}"},
        fields={"entity_type": "user", "entity_id": sub},
        file=video,
    )


def tus_target(service: Target, video: Path, chunk_mb: float) -> Target:
    """The service's tus endpoint, as the same user, in PATCHes of `chunk_mb` MiB."""
    return Target(
        name=f"tus-{chunk_mb:g}MB",
        port=service.port,
        path=TUS_PATH,
        headers=service.headers,
        fields=service.fields,
        file=video,
        chunk_size=int(chunk_mb * MB),
    )


def baseline_target(port: int, received_dir: Path, video: Path) -> Target:
    """The baseline's upload endpoint; it gets the same form fields as the service."""
    return Target(
        name="baseline",
        port=port,
        path="/upload/",
        headers={},
        fields={"entity_type": "user", "entity_id": str(uuid.uuid4())},
        file=video,
        received_dir=received_dir,
    )


def run_rounds(targets: list[Target], results: Results, service_pid: int) -> None:
    """`repeat` rounds of one upload per target; the order flips every round. The service's
    RSS is measured over each of its uploads."""
    for round_no in range(results.repeat):
        order = targets if round_no % 2 == 0 else targets[::-1]
        for target in order:
            os.sync()  # no dirty pages, of this run or another, left to write back mid-run
            peak = PeakRss(service_pid)
            peak.start()
            run = upload(target)
            if target.name != "baseline":
                results.add_rss(target.name, peak.before_kb, peak.stop(), peak.method)
            else:
                peak.stop()
            discard_upload(target, run.answer)
            results.add(target.name, run)
            progress(
                f"  run {round_no + 1}/{results.repeat} {target.name:<9}: {run.seconds:6.2f} s"
                f"  {results.bytes_of(target.name) / MB / run.seconds:7.1f} MB/s"
                f"  (answer {run.wait_seconds:.2f} s after the last byte)"
            )


def benchmark(
    workdir: Path, size: int, repeat: int, tus_size: int, tus_chunks_mb: list[float]
) -> Results:
    """Create the files, start both servers, upload in alternation, measure the service's RSS."""
    video, tus_video = workdir / "bench.mp4", workdir / "bench-tus.mp4"
    progress(f"creating a {size / MB:.1f} MiB test video in {workdir}")
    make_test_video(video, size)
    if tus_chunks_mb:
        progress(f"creating a {tus_size / MB:.1f} MiB test video for the tus runs")
        make_test_video(tus_video, tus_size)
    secret = secrets.token_urlsafe(36)  # 48 characters
    env = service_env(secret, SERVICE_SETTINGS)
    service_port, baseline_port = free_port(), free_port()
    received_dir = workdir / "baseline"
    received_dir.mkdir()
    service_log, baseline_log = workdir / "service.log", workdir / "baseline.log"
    results = Results(file_bytes=size, repeat=repeat, tus_file_bytes=tus_size)
    try:
        with (
            running(service_command(workdir / "svc", service_port), service_log, env) as service,
            running(baseline_command(baseline_port, received_dir), baseline_log, env) as base,
        ):
            progress("starting the service and the baseline server")
            wait_until_answers(service, service_port, f"{API}/", 401, service_log)
            wait_until_answers(base, baseline_port, "/", 404, baseline_log)
            direct = service_target(service_port, secret, video)
            tus = [tus_target(direct, tus_video, mb) for mb in sorted(tus_chunks_mb)]
            results.tus_names = [target.name for target in tus]
            targets = [direct, baseline_target(baseline_port, received_dir, video), *tus]
            run_rounds(targets, results, service.pid)
            results.rss_after_mb = proc_status_kb(service.pid, "VmRSS") / 1024
    finally:
        tail = log_tail(service_log)
        if tail:
            progress(f"the service logged (last {LOG_TAIL_LINES} lines):\n{tail}")
    return results


def report(results: Results) -> str:
    """The human-readable report."""
    runs = f"best of {results.repeat}"
    lines = [
        f"upload benchmark: {results.file_bytes / MB:.1f} MiB file, {results.repeat} runs each",
        f"service   : {results.best_mb_s('service'):.1f} MB/s ({runs}; "
        f"median {results.median_mb_s('service'):.1f} MB/s)",
        f"baseline  : {results.best_mb_s('baseline'):.1f} MB/s ({runs}; "
        f"median {results.median_mb_s('baseline'):.1f} MB/s)",
        f"ratio     : {results.ratio:.2f} (target >= {RATIO_TARGET})  "
        f"{verdict(results.ratio >= RATIO_TARGET)}   [of the medians: {results.median_ratio:.2f}]",
        *tus_report(results),
        f"peak RSS growth of the service in one upload: {results.rss_growth_mb:.1f} MB "
        f"(target < {RSS_TARGET_MB:.0f} MB)  {verdict(results.rss_growth_mb < RSS_TARGET_MB)}",
        "  by upload: "
        + ", ".join(f"{k} {v:.1f} MB" for k, v in results.rss_growth_by_target_mb.items()),
        f"  RSS {results.rss_before_mb:.1f} MB before, {results.rss_peak_mb:.1f} MB peak, "
        f"{results.rss_after_mb:.1f} MB after ({results.rss_method})",
        f"  median wait for the answer after the last byte: service "
        f"{results.median_wait('service'):.2f} s, baseline {results.median_wait('baseline'):.2f} s",
    ]
    return "\n".join(lines)


def tus_report(results: Results) -> list[str]:
    """The tus lines of the report: throughput per chunk size, the ratio to the direct upload."""
    if not results.tus_names:
        return []
    runs = f"best of {results.repeat}"
    lines = [
        f"{name:<10}: {results.best_mb_s(name):.1f} MB/s ({runs}; median "
        f"{results.median_mb_s(name):.1f} MB/s; {results.tus_file_bytes / MB:.0f} MiB file)"
        for name in results.tus_names
    ]
    ok = results.tus_ratio >= TUS_RATIO_TARGET
    lines.append(
        f"{results.tus_names[-1]} / service: {results.tus_ratio:.2f} (target >= "
        f"{TUS_RATIO_TARGET})  {verdict(ok)}   [of the medians: {results.tus_median_ratio:.2f}]"
    )
    return lines


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size-mb",
        type=float,
        default=DEFAULT_SIZE_MB,
        help="test file size in MiB (499; the service takes videos up to 500)",
    )
    parser.add_argument(
        "--tus-size-mb", type=float, default=DEFAULT_TUS_SIZE_MB,
        help="file size of the tus runs in MiB (400)",
    )  # fmt: skip
    parser.add_argument(
        "--tus-chunks-mb", default=DEFAULT_TUS_CHUNKS_MB,
        help="PATCH sizes of the tus runs in MiB, comma-separated (5,50); empty: no tus runs",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="uploads per server (3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder (/tmp)")
    parser.add_argument(
        "--baseline-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS
    )
    parser.add_argument("--baseline-digest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size_mb <= 0 or args.tus_size_mb <= 0 or args.repeat < 1:
        parser.error("--size-mb and --tus-size-mb must be positive and --repeat at least 1")
    try:
        args.tus_chunks_mb = [float(mb) for mb in args.tus_chunks_mb.split(",") if mb.strip()]
    except ValueError:
        parser.error("--tus-chunks-mb takes MiB figures, comma-separated: 5,50")
    if any(mb <= 0 for mb in args.tus_chunks_mb):
        parser.error("--tus-chunks-mb must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, internally, the baseline server)."""
    args = parse_args(argv)
    if args.baseline_server:
        port, directory = args.baseline_server
        asyncio.run(serve_baseline(int(port), Path(directory), args.baseline_digest))
        return 0
    return run_bench(
        "upload",
        args.workdir,
        lambda tmp: benchmark(
            tmp, int(args.size_mb * MB), args.repeat, int(args.tus_size_mb * MB), args.tus_chunks_mb
        ),
        lambda results: json.dumps(results.as_json(), indent=2) if args.json else report(results),
    )


if __name__ == "__main__":
    sys.exit(main())
