"""Processing budgets: every kind of bomb, made here, fails fast with a reason that names its
limit and is not retried; a job over its CPU time fails at once; still images never wait
behind heavy jobs. All through the real service with real workers, pyvips and ffmpeg."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mediasvc.app import Service, start_service
from mediasvc.pipeline.jobs import HEAVY, new_job
from tests.support.client import API, Client
from tests.support.media import settled
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token

SVG_CPU_LIMIT = 2.0
VIDEO_FRAME_LIMIT = 1000  # lowered here: a real frame bomb takes minutes to encode


def gif_bomb(width: int, height: int, frames: int) -> bytes:
    """An animated GIF of `frames` full-screen frames, each a single 1x1 LZW-coded pixel on a
    `width` x `height` screen: 23 bytes a frame, `width * height` decoded pixels a frame."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + GIF_LOOP + (GIF_FRAME_DELAY + image) * frames + b"\x3b"


def flicker_gif(width: int, height: int, frames: int) -> bytes:
    """An animated GIF whose `width` x `height` frames are each of one colour, red and blue in
    turn, in 2.5 KB a frame. Every frame differs from the one before, so the WebP encoder
    encodes each one whole, where it merges the repeated frames of `gif_bomb`: 200
    megapixels take about 10 s of CPU, far over a 1 s budget on any machine."""
    screen = struct.pack("<HHBBB", width, height, 0x81, 0, 0)  # a global palette of 4
    palette = b"\xc8\x1e\x1e" + b"\x1e\x1e\xc8" + b"\x00\x00\x00" * 2
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    red, blue = (descriptor + _lzw_run(index, width * height) for index in (0, 1))
    body = b"".join(GIF_FRAME_DELAY + (blue if n % 2 else red) for n in range(frames))
    return b"GIF89a" + screen + palette + GIF_LOOP + body + b"\x3b"


GIF_LOOP = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
GIF_FRAME_DELAY = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # 0.1 s a frame


def _lzw_run(index: int, count: int, min_code_size: int = 2) -> bytes:
    """The image data of `count` pixels of one palette `index`: GIF's LZW codes, packed as
    giflib packs them, in sub-blocks. On a run the table grows by one pixel a code, so the
    codes stand for runs of 1, 2, 3... pixels (up to 4095 codes: 8 million pixels)."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    packed = bytearray()
    width, next_code, bits, pending = min_code_size + 1, end + 1, 0, 0

    def emit(code: int) -> None:
        nonlocal width, bits, pending
        pending |= code << bits
        bits += width
        while bits >= 8:
            packed.append(pending & 0xFF)
            pending >>= 8
            bits -= 8
        if next_code >= 1 << width and width < 12:
            width += 1

    emit(clear)
    run = 1
    while count > 0:
        taken = min(run, count)
        emit(index if taken == 1 else end + taken - 1)  # the code of a run of `taken`
        count -= taken
        next_code += 1
        run += 1
    emit(end)
    if bits:
        packed.append(pending)
    blocks = [packed[start : start + 255] for start in range(0, len(packed), 255)]
    return bytes([min_code_size]) + b"".join(bytes([len(b)]) + b for b in blocks) + b"\x00"


def svg_bomb() -> bytes:
    """A few bytes whose filter costs minutes when drawn at the declared size."""
    return (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="2000" height="2000">'
        b'<filter id="f"><feMorphology radius="1500"/></filter>'
        b'<rect width="2000" height="2000" filter="url(#f)"/></svg>'
    )


def pdf(pages: int, width: int, height: int) -> bytes:
    """A valid PDF of `pages` empty pages of `width` x `height` points, written by hand."""
    kids = b" ".join(b"%d 0 R" % (number + 3) for number in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] >>" % (width, height)] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _video(path: Path, source: str, *encoding: str) -> bytes:
    _ffmpeg("-f", "lavfi", "-i", source, *encoding, "-pix_fmt", "yuv420p", str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, bytes, str]]:
    """Each kind of bomb: its file name, its bytes, and the reason it must fail with."""
    folder = tmp_path_factory.mktemp("bombs")
    fast = ("-c:v", "libx264", "-preset", "ultrafast")
    return {
        "gif": (
            "bomb.gif",
            gif_bomb(2000, 2000, 1000),  # 4 gigapixels in 23 KB
            "Animation has 1000 frames of 2000x2000 pixels (4000000000 in all), "
            "over the limit of 400000000 pixels",
        ),
        "svg": ("bomb.svg", svg_bomb(), f"Processing used more than {SVG_CPU_LIMIT:g} s of CPU"),
        "video-pixels": (
            "huge.mp4",
            _video(folder / "huge.mp4", "color=size=8000x8000:rate=1:duration=1", *fast),
            "Video is 8000x8000 pixels per frame, over the limit of 35389440 pixels",
        ),
        "video-duration": (
            "long.mp4",  # 100 hours, one frame a minute
            _video(folder / "long.mp4", "color=size=32x32:rate=1/60:duration=360000", *fast),
            "Video lasts 360000 s, over the limit of 3600 s",
        ),
        "video-frames": (
            "fast.mkv",
            _video(folder / "fast.mkv", "color=size=16x16:rate=1000:duration=2", *fast),
            f"Video has 2000 frames, over the limit of {VIDEO_FRAME_LIMIT} frames",
        ),
        "pdf-pages": (
            "pages.pdf",
            pdf(5000, 200, 200),
            "PDF has 5000 pages, over the limit of 2000 pages",
        ),
        "pdf-page-size": (
            "poster.pdf",
            pdf(1, 14400, 14400),  # the largest page PDF allows, 200 x 200 inches
            "PDF page is 14400x14400 points, over the limit of 25000000 pixels at 72 dpi",
        ),
    }


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    """A normal 100x100 JPEG."""
    out = subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
            "-i", "testsrc=size=100x100:rate=1", "-frames:v", "1", "-f", "mjpeg", "-",
        ],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return out.stdout


@pytest.fixture(scope="module")
async def budget_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    settings = service_settings(
        tmp_path_factory.mktemp("budget") / "var",
        workers=2,
        max_queued_jobs=4,
        svg_cpu_limit=SVG_CPU_LIMIT,
        max_video_frames=VIDEO_FRAME_LIMIT,
        dispatcher_poll_interval=0.1,
    )
    service = await start_service(settings)
    yield service
    await service.stop()


@pytest.fixture(scope="module")
def budget_client(budget_service: Service) -> Client:
    return Client(f"http://127.0.0.1:{budget_service.port}")


def new_caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


async def upload(client: Client, caller: Caller, name: str, content: bytes) -> str:
    response = await client.upload(caller.token, name, content, caller.entity)
    assert response.status == 201, response.body
    media_id: str = response.json["id"]
    return media_id


@pytest.mark.parametrize(
    "kind",
    ["gif", "svg", "video-pixels", "video-duration", "video-frames", "pdf-pages", "pdf-page-size"],
)
async def test_each_bomb_fails_fast_with_its_reason_and_no_retry(
    budget_client: Client, bombs: dict[str, tuple[str, bytes, str]], kind: str
) -> None:
    caller = new_caller()
    name, content, reason = bombs[kind]
    assert len(content) < 2_500_000
    started = time.monotonic()
    media = await settled(
        budget_client, caller.token, await upload(budget_client, caller, name, content), 30
    )
    assert media["status"] == "failed"
    assert media["error"] == reason
    assert media["job"]["state"] == "failed"
    assert media["job"]["attempts"] == 1  # over budget: refused, never retried
    assert media["variants"] == []
    assert time.monotonic() - started < 20  # against 3 x 300 s before budgets


async def test_normal_jpeg_is_ready_within_10s_behind_two_bombs_of_each_kind(
    budget_client: Client,
    bombs: dict[str, tuple[str, bytes, str]],
    jpeg: bytes,
) -> None:
    caller = new_caller()
    queued = [
        (await upload(budget_client, caller, name, content), reason)
        for name, content, reason in bombs.values()
        for _ in range(2)
    ]
    started = time.monotonic()
    media = await settled(
        budget_client, caller.token, await upload(budget_client, caller, "ok.jpg", jpeg), 10
    )
    waited = time.monotonic() - started
    assert media["status"] == "ready", media["error"]
    assert (media["width"], media["height"]) == (100, 100)
    assert waited < 10
    for media_id, reason in queued:
        bomb = await settled(budget_client, caller.token, media_id, 60)
        assert (bomb["status"], bomb["error"], bomb["job"]["attempts"]) == ("failed", reason, 1)


@pytest.fixture(scope="module")
def hd_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real 4-second 720p video: a few seconds of CPU to transcode."""
    path = tmp_path_factory.mktemp("hd") / "hd.mp4"
    return _video(
        path, "testsrc2=size=1280x720:rate=30:duration=4", "-c:v", "libx264", "-preset", "ultrafast"
    )


async def test_still_images_do_not_wait_behind_heavy_jobs(
    budget_client: Client, hd_video: bytes, jpeg: bytes
) -> None:
    """Two workers: heavy jobs (video) get one at a time, the other stays free for stills."""
    caller = new_caller()
    videos = [await upload(budget_client, caller, f"v{i}.mp4", hd_video) for i in range(3)]
    photo = await upload(budget_client, caller, "photo.jpg", jpeg)
    media = await settled(budget_client, caller.token, photo, 10)
    assert media["status"] == "ready", media["error"]
    statuses = [
        (await budget_client.request("GET", f"{API}/{v}/", token=caller.token)).json["status"]
        for v in videos
    ]
    assert statuses.count("processing") >= 2, statuses  # the photo did not queue behind them
    for video in videos:
        assert (await settled(budget_client, caller.token, video, 120))["status"] == "ready"


@pytest.fixture(scope="module")
async def cpu_limited_client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    settings = service_settings(
        tmp_path_factory.mktemp("cpu") / "var",
        workers=2,
        job_cpu_limit=1,
        job_max_attempts=3,
        dispatcher_poll_interval=0.1,
    )
    service = await start_service(settings)
    yield Client(f"http://127.0.0.1:{service.port}")
    await service.stop()


async def test_ffmpeg_over_the_job_cpu_limit_fails_without_retry(
    cpu_limited_client: Client, hd_video: bytes
) -> None:
    caller = new_caller()
    media_id = await upload(cpu_limited_client, caller, "hd.mp4", hd_video)
    media = await settled(cpu_limited_client, caller.token, media_id, 30)
    assert media["status"] == "failed"
    assert media["error"] == "Processing used more than 1 s of CPU"
    assert media["job"]["attempts"] == 1


async def test_libvips_over_the_job_cpu_limit_fails_without_retry(
    cpu_limited_client: Client, jpeg: bytes
) -> None:
    """An animation within every header limit (200 megapixels) that takes about 10 s of CPU
    to encode: the job is stopped inside libvips, and fails once, with the reason."""
    caller = new_caller()
    media_id = await upload(cpu_limited_client, caller, "slow.gif", flicker_gif(2000, 1000, 100))
    media = await settled(cpu_limited_client, caller.token, media_id, 30)
    assert media["status"] == "failed"
    assert media["error"] == "Processing used more than 1 s of CPU"
    assert media["job"]["attempts"] == 1
    after = await upload(cpu_limited_client, caller, "after.jpg", jpeg)
    assert (await settled(cpu_limited_client, caller.token, after, 20))["status"] == "ready"


async def test_jobs_queued_before_lanes_existed_are_still_run(
    budget_service: Service, budget_client: Client, jpeg: bytes
) -> None:
    caller = new_caller()
    media_id = await upload(budget_client, caller, "old.jpg", jpeg)
    assert (await settled(budget_client, caller.token, media_id, 20))["status"] == "ready"
    legacy = new_job(media_id, ["thumbnail"], int(time.time() * 1000)).to_doc()
    del legacy["lane"]  # as an older version queued it
    jobs = budget_service.context.repository.jobs_collection
    await jobs.insert_one(legacy)
    dispatcher = budget_service.context.dispatcher
    assert dispatcher is not None
    assert await dispatcher.queue.assign_lanes(HEAVY) == 1  # what a dispatcher does at start
    dispatcher.wake()
    deadline = time.monotonic() + 20
    while (await jobs.find_one({"_id": legacy["_id"]}))["state"] != "done":
        assert time.monotonic() < deadline, "the job without a lane was never claimed"
        await asyncio.sleep(0.05)
