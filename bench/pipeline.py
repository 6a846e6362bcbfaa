"""Processing-pipeline benchmark: the real service against a bare process pool, in one run.

What it measures
    * Throughput of the service's image pipeline: N 24-megapixel JPEGs (6000x4000, 5-9 MB
      each, under the service's 10 MB image limit) uploaded to ``POST /api/v1/drf/media/upload/``
      a few at a time, timed from the first upload until every media is ``ready``. The service
      runs with ``MEDIASVC_IMAGE_OPERATIONS=thumbnail``, so each upload is processed into
      exactly one derived file: a JPEG thumbnail whose long side is 320 pixels.
    * The same N images through a baseline: a bare ``ProcessPoolExecutor`` with the same number
      of workers and start method (forkserver), whose workers are set up like the service's (one
      libvips thread, no operation cache) and make the same thumbnail with the same JPEG options
      straight from the files on disk. The baseline is the cost of the processing alone; what
      the service adds on top (upload, storage, records, the job queue, the dispatcher) is what
      the ratio shows.
    * Peak RSS (VmHWM) of the worker processes of both pools, sampled all through the run since
      a worker may be replaced (tasks per child). Workers are the children of the pool's
      forkserver, itself a child of the service; the embedded database and multiprocessing's
      resource tracker, also children of the service, are not workers and are not counted.
    * Where the CPU goes, per image: the pool workers, the service process (uploads, API,
      dispatcher), its embedded database, and this process (the client).

How many workers
    Both pools get the service's default pool size (2 workers), but never more than one fewer
    than the machine has cores: 1 on a 2-core machine. The service process needs a core of its
    own. Receiving a 7.5 MB upload (the socket, the multipart parser, the sha256, the write and
    fsync) costs it some 35 ms of CPU, and the embedded database some 15 ms more per image,
    against ~130 ms of processing; the baseline pays none of it, since it reads files that
    are already on disk. With as many workers as cores, that CPU comes out of the workers' share
    and the ratio measures the cost of receiving uploads, not the pipeline: it is then bound by
    the CPU-time ratio the report prints (about 0.65 on 2 cores). ``--workers`` sets the count.

Why the baseline runs in the same invocation
    These machines are noisy: absolute images/s change from one minute to the next with the load
    of the neighbours and the page cache. A ratio to a baseline measured in the same run, with
    the runs interleaved (the order flips every round), is what stays comparable. Both pools are
    warmed up first (their workers started, libvips loaded) so that every timed round measures
    the steady state, and every round starts from the same state: dirty pages synced, and what
    the previous round stored deleted. The ratio still flatters the service when other programs
    keep the machine busy (the scheduler shares CPU per runnable thread, and the service runs
    more of them), so the report shows the load average the run started with.

The client disturbs what it measures as little as it can, as a high-throughput upload client
would: files are streamed with ``sendfile``; readiness is asked of one media at a time, by id,
every 50 ms at most (a list or a count would cost the service and its database far more CPU);
and /proc is read in one pass per sample, 5 times a second.

Usage::

    .venv/bin/python bench/pipeline.py [--images 24] [--workers N] [--repeat 2] [--json]
                                       [--workdir DIR]

Figures use MB = 2**20 bytes, as ``mediasvc.settings`` does. The process always exits 0 once
it has measured something: a missed target is reported as MISSED, not as a failure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from common import (
    LOG_TAIL_LINES,
    REQUEST_TIMEOUT,
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
    verdict,
    wait_until_answers,
)

MB = 1024 * 1024
DEFAULT_IMAGES = 24
SERVICE_POOL_SIZE = service_default("workers")
DEFAULT_WORKERS = max(1, min(SERVICE_POOL_SIZE, (os.cpu_count() or 1) - 1))
DEFAULT_REPEAT = 2
IMAGE_WIDTH, IMAGE_HEIGHT = 6000, 4000  # 24 megapixels
IMAGE_QUALITY = 90
MAX_IMAGE_BYTES = service_default("max_image_size")
WARMUP_WIDTH = 1200  # the warm-up images are 1200x800
THUMBNAIL_SIZE = service_default("thumbnail_size")
THUMBNAIL_QUALITY = 82  # mediasvc.pipeline.images.JPEG_QUALITY
START_METHOD = service_default("worker_start_method")
API = "/api/v1/drf/media"
UPLOAD_PATH = f"{API}/upload/"
UPLOADS_IN_FLIGHT = 3
POLL_INTERVAL = 0.05
PAGE_SIZE = service_default("max_page_size")
RATIO_TARGET = 0.8
RSS_TARGET_MB = 300.0
RUN_TIMEOUT = 900.0
SAMPLE_INTERVAL = 0.2  # VmHWM is a high-water mark: sampling only has to see every worker
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the test images


def make_test_images(directory: Path, count: int, warmup: int) -> tuple[list[Path], list[Path]]:
    """`count` large JPEGs and `warmup` small ones, written by a subprocess: libvips, its
    threads and the ~200 MB of pixels the images are made from are gone before anything is
    timed, and this process never loads libvips at all."""
    command = [sys.executable, str(Path(__file__).resolve()), "--make-images"]
    command += [str(directory), str(count), str(warmup)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=RUN_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise BenchError(
            f"making the images failed: {exc.stderr.decode(errors='replace')}"
        ) from None
    images = sorted(directory.glob("image-*.jpg"))
    warmups = sorted(directory.glob("warmup-*.jpg"))
    if len(images) != count or len(warmups) != warmup:
        raise BenchError(f"expected {count} + {warmup} images in {directory}")
    too_large = [path.name for path in images if path.stat().st_size >= MAX_IMAGE_BYTES]
    if too_large:
        raise BenchError(f"over the {MAX_IMAGE_BYTES // MB} MB image limit: {too_large}")
    return images, warmups


def write_test_images(directory: Path, count: int, warmup: int) -> None:
    """(In the subprocess.) Photo-like JPEGs: smooth colour fields plus film grain.

    The grain is what makes the file size realistic (5-9 MB at Q=90 for 24 megapixels); each
    image gets its own crop of one noise field, its own grain strength and orientation, so no
    two files are alike. Computing one noise field and cropping it keeps this to ~0.5 s an image.
    """
    import pyvips

    margin = 256
    base = smooth_colours(pyvips, IMAGE_WIDTH, IMAGE_HEIGHT).copy_memory()
    size = (IMAGE_WIDTH + margin, IMAGE_HEIGHT + margin)
    noise = pyvips.Image.gaussnoise(*size, sigma=1.0, mean=0.0).copy_memory()
    for index in range(count):
        grain = noise.crop((index * 37) % margin, (index * 53) % margin, IMAGE_WIDTH, IMAGE_HEIGHT)
        image = base.fliphor() if index % 2 else base
        image = image.flipver() if index % 4 >= 2 else image
        photo = (image + grain * (6 + index % 5)).cast("uchar").copy(interpretation="srgb")
        save_under_limit(photo, directory / f"image-{index:03d}.jpg")
    small = base.resize(WARMUP_WIDTH / IMAGE_WIDTH)
    for index in range(warmup):
        small.jpegsave(str(directory / f"warmup-{index:03d}.jpg"), Q=IMAGE_QUALITY - index)


def smooth_colours(pyvips: Any, width: int, height: int) -> Any:
    """Three bands of gradients and ripples: large smooth areas, like a photo's."""
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0], xyz[1]
    red = x * (255.0 / width) + (y / 37.0).sin() * 40
    green = y * (255.0 / height) + (x / 53.0).sin() * 40
    blue = (x + y) * (255.0 / (width + height)) + ((x - y) / 71.0).cos() * 40
    return red.bandjoin([green, blue]).cast("uchar")


def save_under_limit(image: Any, path: Path) -> None:
    """Save at IMAGE_QUALITY, lowering the quality if the file would pass the upload limit."""
    for quality in range(IMAGE_QUALITY, 50, -5):
        image.jpegsave(str(path), Q=quality)
        if path.stat().st_size < MAX_IMAGE_BYTES:
            return
    raise RuntimeError(f"{path.name} stays over {MAX_IMAGE_BYTES} bytes")


# ---------------------------------------------------------------- the baseline pool


def init_baseline_worker() -> None:
    """Pool initializer, as the service's: one libvips thread, no operation cache."""
    os.environ["VIPS_CONCURRENCY"] = "1"
    import pyvips

    pyvips.cache_set_max(0)


def make_thumbnail(source: str, target: str) -> tuple[int, int, float]:
    """(In a worker.) The service's thumbnail of one file: its width, height and seconds."""
    import pyvips

    started = time.perf_counter()
    image = pyvips.Image.thumbnail(source, THUMBNAIL_SIZE, height=THUMBNAIL_SIZE, size="down")
    image.jpegsave(target, Q=THUMBNAIL_QUALITY, strip=True, optimize_coding=True, interlace=True)
    return image.width, image.height, time.perf_counter() - started


@contextmanager
def baseline_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A bare ProcessPoolExecutor with the service's start method, shut down when done."""
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(START_METHOD),
        initializer=init_baseline_worker,
    )
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- processes


def service_settings(workers: int) -> dict[str, str]:
    """The service's settings for this benchmark."""
    return {
        "MEDIASVC_WORKERS": str(workers),
        "MEDIASVC_IMAGE_OPERATIONS": "thumbnail",  # one derived file per upload, as the baseline
        "MEDIASVC_MAX_QUEUED_JOBS": str(2 * workers),
    }


# ---------------------------------------------------------------- the service's API


@dataclass
class ServiceClient:
    """A user of the service uploading to their own entity (entity_type user, id = sub)."""

    port: int
    entity_id: str
    headers: dict[str, str]

    @classmethod
    def new_user(cls, port: int, secret: str) -> ServiceClient:
        """A fresh user with a token valid for an hour."""
        sub = str(uuid.uuid4())
        token = jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
        return cls(port, sub, {"Authorization": f"Bearer {token}"})

    def call(
        self,
        method: str,
        path: str,
        expect: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One API call that must answer `expect`; its JSON (None for an empty body)."""
        try:
            status, raw = request(
                self.port, method, path, {**self.headers, **(headers or {})}, body
            )
        except OSError as exc:
            raise BenchError(f"{method} {path} failed: {exc}") from None
        if status != expect:
            text = raw[:500].decode(errors="replace")
            raise BenchError(f"{method} {path} answered {status}, not {expect}: {text}")
        return json.loads(raw) if raw else None

    def upload(self, path: Path) -> str:
        """Upload one JPEG, streamed from the file (`common.post_file`); the new media's id."""
        fields = {"entity_type": "user", "entity_id": self.entity_id}
        try:
            answer = post_file(
                self.port, UPLOAD_PATH, path, fields, self.headers, "image/jpeg", REQUEST_TIMEOUT
            )
        except (OSError, http.client.HTTPException) as exc:
            raise BenchError(f"uploading {path.name} failed: {exc!r}") from None
        if answer.status != 201:
            text = answer.body[:500].decode(errors="replace")
            raise BenchError(f"uploading {path.name} answered {answer.status}: {text}")
        return str(json.loads(answer.body)["id"])

    def media(self, media_id: str) -> dict[str, Any]:
        """One media."""
        return dict(self.call("GET", f"{API}/{media_id}/", 200))

    def status(self, media_id: str) -> str:
        """The status of one media."""
        return str(self.media(media_id)["status"])

    def all_media(self) -> list[dict[str, Any]]:
        """Every media of this user, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            query = urlencode(
                {"entity_id": self.entity_id, "limit": PAGE_SIZE, "offset": len(found)}
            )
            page = self.call("GET", f"{API}/?{query}", 200)
            found += page["results"]
            if not page["results"] or len(found) >= page["count"]:
                return found

    def delete(self, media_id: str) -> None:
        """Delete one media and its files."""
        self.call("DELETE", f"{API}/{media_id}/", 204)


# ---------------------------------------------------------------- processes of the pools


@dataclass(frozen=True)
class ProcessInfo:
    """What /proc/<pid>/stat says about one process."""

    ppid: int
    cpu_seconds: float  # user + system


def read_processes() -> dict[int, ProcessInfo]:
    """Every process now: one pass over /proc/<pid>/stat (cheap enough to repeat 5 times a
    second on a busy machine, unlike asking for each process's children one by one)."""
    found: dict[int, ProcessInfo] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue  # it ended meanwhile
        fields = data[data.rfind(b")") + 2 :].split()  # what follows "pid (comm) "
        cpu_seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        found[int(entry.name)] = ProcessInfo(int(fields[1]), cpu_seconds)
    return found


def command_line(pid: int) -> str:
    """The command line of a process ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return ""


def pool_roles(root_pid: int, processes: dict[int, ProcessInfo]) -> dict[int, str]:
    """The process-pool workers (`workers`) and embedded database (`database`) of `root_pid`.

    With forkserver the workers are forked by the forkserver process, a child of `root_pid`;
    with spawn they are its direct children running ``spawn_main``. The embedded database
    (``nx_27017``) is a child too; multiprocessing's resource tracker is neither.
    """
    roles: dict[int, str] = {}
    for pid, info in processes.items():
        if info.ppid != root_pid:
            continue
        command = command_line(pid)
        if "multiprocessing.forkserver" in command:
            roles.update({w: "workers" for w, child in processes.items() if child.ppid == pid})
        elif "spawn_main" in command:
            roles[pid] = "workers"
        elif "nx_27017" in command:
            roles[pid] = "database"
    return roles


class WorkerPeaks:
    """The peak RSS (VmHWM, kB) of every pool worker ever seen under each root process."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.peaks: dict[str, dict[int, int]] = {name: {} for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-peaks", daemon=True)

    def start(self) -> None:
        """Sample in the background until `stop`."""
        self._thread.start()

    def stop(self) -> None:
        """One last sample, then stop."""
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        """Read the VmHWM of every worker alive now."""
        processes = read_processes()
        for name, root in self.roots.items():
            for pid, role in pool_roles(root, processes).items():
                if role != "workers":
                    continue
                with suppress(OSError, BenchError):  # it ended meanwhile
                    seen = self.peaks[name].get(pid, 0)
                    self.peaks[name][pid] = max(seen, proc_status_kb(pid, "VmHWM"))

    def peak_mb(self, name: str) -> float:
        """The largest worker peak under `name`, in MB (0 if no worker was seen)."""
        return max(self.peaks[name].values(), default=0) / 1024

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self.sample()


# ---------------------------------------------------------------- where the CPU goes

CpuSnapshot = dict[tuple[str, int], float]  # (role, pid) -> CPU seconds so far


def cpu_snapshot(roots: dict[int, str], processes: dict[int, ProcessInfo]) -> CpuSnapshot:
    """CPU seconds so far of each root process (under its role) and of the pool workers and
    embedded database of those that have them."""
    roles = dict(roots)
    for root in roots:
        roles.update(pool_roles(root, processes))
    return {
        (role, pid): processes[pid].cpu_seconds for pid, role in roles.items() if pid in processes
    }


def cpu_spent(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds per role between two snapshots (a process started in between counts from
    zero; one that ended in between is lost, which only happens when a worker is replaced)."""
    spent: dict[str, float] = {}
    for (role, pid), seconds in after.items():
        spent[role] = spent.get(role, 0.0) + seconds - before.get((role, pid), 0.0)
    return spent


# ---------------------------------------------------------------- one run of each


@dataclass
class Run:
    """One timed pass over the images: seconds in all, and where the time went."""

    seconds: float
    task_seconds: list[float]  # per image: job duration (service), time in the worker (baseline)
    cpu_seconds: dict[str, float]  # per role: workers, service, database, client
    upload_seconds: float | None = None  # service: until the last upload was answered


def wait_until_ready(client: ServiceClient, uploads: list[Future[str]], started: float) -> None:
    """Wait until every uploaded media is ready; fail fast on a failed upload or media.

    The media are looked at one at a time, in upload order (the order the queue hands out
    their jobs): a look is one read by id, and there is one every POLL_INTERVAL at most.
    Each look costs the service and its database CPU that their workers would otherwise
    have, so the benchmark looks no more than it must: a list or a count scans far more.
    """
    for upload in uploads:
        media_id = upload.result(timeout=RUN_TIMEOUT)  # raises the BenchError of that upload
        while (status := client.status(media_id)) != "ready":
            if status == "failed":
                raise BenchError(f"processing failed: {client.media(media_id).get('error')!r}")
            if time.perf_counter() - started > RUN_TIMEOUT:
                raise BenchError(f"not every media was ready after {RUN_TIMEOUT:.0f} s")
            time.sleep(POLL_INTERVAL)


def checked_media(client: ServiceClient, ids: list[str], width: int, height: int) -> list[float]:
    """Check every media is ready with a THUMBNAIL_SIZE thumbnail; their job durations (s)."""
    media = {m["id"]: m for m in client.all_media()}
    durations = []
    for media_id in ids:
        found = media.get(media_id)
        if found is None or found["status"] != "ready":
            raise BenchError(f"media {media_id} is not ready: {found and found['status']}")
        if (found["width"], found["height"]) != (width, height):
            raise BenchError(f"media {media_id} is {found['width']}x{found['height']}")
        thumbnails = [v for v in found["variants"] if v["name"] == "thumbnail"]
        if len(found["variants"]) != 1 or not thumbnails:
            raise BenchError(f"media {media_id} has variants {found['variants']}, not a thumbnail")
        long_side = max(thumbnails[0]["width"], thumbnails[0]["height"])
        if long_side != THUMBNAIL_SIZE:
            raise BenchError(f"the thumbnail of {media_id} has a long side of {long_side}")
        duration_ms = (found.get("job") or {}).get("duration_ms")
        if duration_ms is not None:
            durations.append(duration_ms / 1000)
    return durations


def service_cpu(service_pid: int) -> CpuSnapshot:
    """The service's processes, and this one (the client: uploads and polls)."""
    snapshot = cpu_snapshot({service_pid: "service"}, read_processes())
    snapshot["client", os.getpid()] = time.process_time()
    return snapshot


def run_service(
    client: ServiceClient, service_pid: int, images: list[Path], size: tuple[int, int]
) -> Run:
    """Upload the images, UPLOADS_IN_FLIGHT at a time; time it until all are ready."""
    os.sync()  # no dirty pages, of this run or another, left to write back mid-run
    answered: list[float] = []
    pool = ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="upload")
    try:
        cpu_before = service_cpu(service_pid)
        started = time.perf_counter()
        uploads = [pool.submit(client.upload, path) for path in images]
        for upload in uploads:
            upload.add_done_callback(lambda _: answered.append(time.perf_counter()))
        wait_until_ready(client, uploads, started)
        seconds = time.perf_counter() - started
        cpu = cpu_spent(cpu_before, service_cpu(service_pid))
        ids = [upload.result() for upload in uploads]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    durations = checked_media(client, ids, *size)
    for media_id in ids:  # every run starts from the same state
        client.delete(media_id)
    return Run(seconds, durations, cpu, max(answered) - started)


def baseline_cpu() -> CpuSnapshot:
    """This process (the client, idle but for sampling) and its pool's workers."""
    return cpu_snapshot({os.getpid(): "client"}, read_processes())


def run_baseline(executor: ProcessPoolExecutor, images: list[Path], out_dir: Path) -> Run:
    """Thumbnail the images in the bare pool; time it until the last is written."""
    os.sync()
    cpu_before = baseline_cpu()
    started = time.perf_counter()
    futures = [
        executor.submit(make_thumbnail, str(path), str(out_dir / f"{path.stem}.thumbnail.jpg"))
        for path in images
    ]
    results = [future.result(timeout=RUN_TIMEOUT) for future in futures]
    seconds = time.perf_counter() - started
    cpu = cpu_spent(cpu_before, baseline_cpu())
    for width, height, _ in results:
        if max(width, height) != THUMBNAIL_SIZE:
            raise BenchError(f"a baseline thumbnail is {width}x{height}")
    for path in out_dir.iterdir():
        path.unlink()
    return Run(seconds, [result[2] for result in results], cpu)


# ---------------------------------------------------------------- the benchmark


@dataclass
class Results:
    """Everything the report prints; per target name, in run order."""

    images: int
    workers: int
    repeat: int
    image_mb: float
    seconds: dict[str, list[float]] = field(default_factory=dict)
    task_seconds: dict[str, list[float]] = field(default_factory=dict)
    upload_seconds: list[float] = field(default_factory=list)
    cpu_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    load_average: float = 0.0  # 1-minute load average before the images were made
    worker_peak_mb: dict[str, float] = field(default_factory=dict)
    workers_seen: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, run: Run) -> None:
        """Record one run."""
        self.seconds.setdefault(name, []).append(run.seconds)
        self.task_seconds.setdefault(name, []).extend(run.task_seconds)
        cpu = self.cpu_seconds.setdefault(name, {})
        for role, seconds in run.cpu_seconds.items():
            cpu[role] = cpu.get(role, 0.0) + seconds
        if run.upload_seconds is not None:
            self.upload_seconds.append(run.upload_seconds)

    def best(self, name: str) -> float:
        """Images per second of the fastest run."""
        return self.images / min(self.seconds[name])

    def median(self, name: str) -> float:
        """Images per second of the median run."""
        return self.images / statistics.median(self.seconds[name])

    def median_task(self, name: str) -> float:
        """Median seconds per image inside the pool (job duration for the service)."""
        return statistics.median(self.task_seconds[name]) if self.task_seconds.get(name) else 0.0

    def cpu_ms_per_image(self, name: str) -> dict[str, float]:
        """Mean CPU milliseconds per image of each role, over every run of `name`."""
        images = self.images * len(self.seconds[name])
        return {role: 1000 * s / images for role, s in self.cpu_seconds.get(name, {}).items()}

    @property
    def cpu_ratio(self) -> float:
        """Baseline over service CPU time per image, every process counted: the ratio to expect
        when the workers keep every core busy (and one that other load barely moves)."""
        service = sum(self.cpu_ms_per_image("service").values())
        return sum(self.cpu_ms_per_image("baseline").values()) / service if service else 0.0

    @property
    def ratio(self) -> float:
        """Service over baseline, best runs: the figure the target is about."""
        return self.best("service") / self.best("baseline")

    @property
    def median_ratio(self) -> float:
        """Service over baseline, median runs: how far to trust `ratio`."""
        return self.median("service") / self.median("baseline")

    @property
    def rss_ok(self) -> bool:
        """The service's workers were seen and stayed under the target."""
        return self.workers_seen.get("service", 0) > 0 and (
            self.worker_peak_mb["service"] < RSS_TARGET_MB
        )

    def as_json(self) -> dict[str, Any]:
        """The figures, for `--json`."""
        names = list(self.seconds)
        return {
            **asdict(self),
            "images_per_s": {n: {"best": self.best(n), "median": self.median(n)} for n in names},
            "median_task_seconds": {n: self.median_task(n) for n in names},
            "cpu_ms_per_image": {n: self.cpu_ms_per_image(n) for n in names},
            "ratio": self.ratio,
            "median_ratio": self.median_ratio,
            "cpu_ratio": self.cpu_ratio,
            "ratio_target": RATIO_TARGET,
            "ratio_ok": self.ratio >= RATIO_TARGET,
            "rss_target_mb": RSS_TARGET_MB,
            "rss_ok": self.rss_ok,
        }


def warm_up(client: ServiceClient, executor: ProcessPoolExecutor, images: list[Path]) -> None:
    """Start every worker of both pools (and load libvips in them) with small images."""
    with ThreadPoolExecutor(1) as uploader:
        uploads = [uploader.submit(client.upload, path) for path in images]
        wait_until_ready(client, uploads, time.perf_counter())
    ids = [upload.result() for upload in uploads]
    for media_id in ids:
        client.delete(media_id)
    futures = [
        executor.submit(make_thumbnail, str(p), str(p.with_suffix(".t.jpg"))) for p in images
    ]
    for future in futures:
        future.result(timeout=RUN_TIMEOUT)


def run_rounds(runs: dict[str, Callable[[], Run]], results: Results) -> None:
    """`repeat` rounds of one run per target; the order flips every round."""
    names = list(runs)
    for round_no in range(results.repeat):
        for name in names if round_no % 2 == 0 else names[::-1]:
            run = runs[name]()
            results.add(name, run)
            uploads = (
                f"  (uploads answered at {run.upload_seconds:.2f} s)" if run.upload_seconds else ""
            )
            progress(
                f"  run {round_no + 1}/{results.repeat} {name:<8}: {run.seconds:6.2f} s"
                f"  {results.images / run.seconds:5.2f} images/s{uploads}"
            )


def benchmark(workdir: Path, count: int, workers: int, repeat: int) -> Results:
    """Make the images, start the service and the bare pool, run both in alternation."""
    load_average = os.getloadavg()[0]
    progress(f"creating {count} JPEGs of {IMAGE_WIDTH}x{IMAGE_HEIGHT} in {workdir}")
    images, warmups = make_test_images(workdir, count, workers)
    image_mb = statistics.mean(path.stat().st_size for path in images) / MB
    progress(
        f"  mean {image_mb:.1f} MB, largest {max(p.stat().st_size for p in images) / MB:.1f} MB"
    )
    secret = secrets.token_urlsafe(36)  # 48 characters
    port = free_port()
    service_log = workdir / "service.log"
    out_dir = workdir / "baseline"
    out_dir.mkdir()
    results = Results(count, workers, repeat, image_mb, load_average=load_average)
    size = (IMAGE_WIDTH, IMAGE_HEIGHT)
    env = service_env(secret, service_settings(workers))
    try:
        with (
            running(service_command(workdir / "svc", port), service_log, env) as service,
            baseline_pool(workers) as executor,
        ):
            progress(f"starting the service ({workers} workers) and the baseline pool")
            wait_until_answers(service, port, f"{API}/", 401, service_log)
            client = ServiceClient.new_user(port, secret)
            peaks = WorkerPeaks({"service": service.pid, "baseline": os.getpid()})
            peaks.start()
            try:
                warm_up(client, executor, warmups)
                runs = {
                    "service": lambda: run_service(client, service.pid, images, size),
                    "baseline": lambda: run_baseline(executor, images, out_dir),
                }
                run_rounds(runs, results)
            finally:
                peaks.stop()
            for name in peaks.roots:
                results.worker_peak_mb[name] = peaks.peak_mb(name)
                results.workers_seen[name] = len(peaks.peaks[name])
    finally:
        tail = log_tail(service_log)
        if tail:
            progress(f"the service logged (last {LOG_TAIL_LINES} lines):\n{tail}")
    return results


def report(results: Results) -> str:
    """The human-readable report."""
    runs = f"best of {results.repeat}"
    workers = f"{results.workers} worker{'s' if results.workers > 1 else ''}"
    service_peak, baseline_peak = (results.worker_peak_mb[n] for n in ("service", "baseline"))
    lines = [
        f"pipeline benchmark: {results.images} JPEGs of {IMAGE_WIDTH}x{IMAGE_HEIGHT} "
        f"(mean {results.image_mb:.1f} MB), {workers}, {results.repeat} runs each",
        f"service   : {results.best('service'):.2f} images/s ({runs}; "
        f"median {results.median('service'):.2f} images/s)",
        f"baseline  : {results.best('baseline'):.2f} images/s ({runs}; "
        f"median {results.median('baseline'):.2f} images/s)",
        f"ratio     : {results.ratio:.2f} (target >= {RATIO_TARGET})  "
        f"{verdict(results.ratio >= RATIO_TARGET)}   [of the medians: {results.median_ratio:.2f}]",
        f"peak RSS of a service worker: {service_peak:.1f} MB (target < {RSS_TARGET_MB:.0f} MB)  "
        f"{verdict(results.rss_ok)}   [{results.workers_seen['service']} workers seen]",
        f"  baseline workers' peak: {baseline_peak:.1f} MB "
        f"[{results.workers_seen['baseline']} workers seen]",
        f"  per image, median: service job {results.median_task('service'):.2f} s "
        f"(claimed to done, waits for a worker included), baseline "
        f"{results.median_task('baseline'):.2f} s (in the worker)",
        f"  service uploads all answered after a median "
        f"{statistics.median(results.upload_seconds):.2f} s of the run",
        f"  CPU per image: service {cpu_line(results.cpu_ms_per_image('service'))}",
        f"                 baseline {cpu_line(results.cpu_ms_per_image('baseline'))}",
        f"  CPU-time ratio (baseline / service, every process): {results.cpu_ratio:.2f}, "
        f"what the ratio is bound to when the workers keep every core busy",
        f"  {results.cores} cores for {workers}: {spare_cores(results)}; load average "
        f"{results.load_average:.2f} at the start",
    ]
    return "\n".join(lines)


def spare_cores(results: Results) -> str:
    """What is left for the service process, its database and the client."""
    spare = results.cores - results.workers
    if spare > 0:
        return f"{spare} left for the service process, its database and this client"
    return (
        "none left for the service process, its database and this client, which take "
        "their CPU from the workers (see 'How many workers' in this script)"
    )


def cpu_line(ms_per_role: dict[str, float]) -> str:
    """`workers 131 ms, service 47 ms, ...`, in a fixed order."""
    order = ["workers", "service", "database", "client"]
    roles = sorted(ms_per_role, key=lambda r: order.index(r) if r in order else len(order))
    shares = ", ".join(f"{role} {ms_per_role[role]:.0f} ms" for role in roles)
    return f"{shares} = {sum(ms_per_role.values()):.0f} ms"


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="JPEGs per run (24)")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"worker processes of both pools ({DEFAULT_WORKERS} here: {SERVICE_POOL_SIZE}, "
        "but at most one fewer than the cores)",
    )
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per target (2)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder (/tmp)")
    parser.add_argument(
        "--make-images", nargs=3, metavar=("DIR", "COUNT", "WARMUP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.images < 1 or args.workers < 1 or args.repeat < 1:
        parser.error("--images, --workers and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, internally, make the test images)."""
    args = parse_args(argv)
    if args.make_images:
        directory, count, warmup = args.make_images
        write_test_images(Path(directory), int(count), int(warmup))
        return 0
    return run_bench(
        "pipeline",
        args.workdir,
        lambda tmp: benchmark(tmp, args.images, args.workers, args.repeat),
        lambda results: json.dumps(results.as_json(), indent=2) if args.json else report(results),
    )


if __name__ == "__main__":
    sys.exit(main())
