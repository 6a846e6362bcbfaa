"""Video and audio as phones, browsers and music apps make them, made by the tests with
ffmpeg: a rotated phone MOV with a GPS tag, a single-frame MP4, one still frame beside an
audio track, a MediaRecorder-style WebM without a container duration, an audio-only MP4,
and MP3/FLAC/M4A files with large cover art."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mediasvc.pipeline.tasks import TaskSpec, run_task
from tests.support.client import API, Client
from tests.support.media import settled, upload_settled
from tests.support.tokens import Caller

# Tags a derived file may carry: its own container's and encoder's, none of the original's.
OWN_TAGS = {
    "major_brand", "minor_version", "compatible_brands", "encoder", "language",
    "handler_name", "vendor_id",
}  # fmt: skip


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-show_chapters",
         "-of", "json", str(path)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    data: dict[str, Any] = json.loads(out)
    return data


SINE = ("-f", "lavfi", "-i", "sine=f=440:duration=2")


@pytest.fixture(scope="module")
def av(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The files, made once for the module."""
    out = tmp_path_factory.mktemp("real-av")
    chapters = out / "chapters.txt"
    chapters.write_text(
        ";FFMETADATA1\ntitle=Holiday\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\n"
        "title=Arrival\n"
    )
    raw = out / "raw.mov"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30", *SINE, "-i", chapters,
        "-map", "0:v", "-map", "1:a", "-map_metadata", "2", "-map_chapters", "2", "-t", "2",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-metadata", "location=+48.8577+002.2950/", "-metadata", "comment=at home",
        "-metadata", "com.apple.quicktime.make=Apple", "-metadata:s:a", "title=Mic",
        raw,
    )  # fmt: skip
    # A stream copy writes the display matrix, as a phone held upright does.
    _ffmpeg("-i", raw, "-c", "copy", "-map_metadata", "0", "-metadata:s:v", "rotate=90",
            out / "phone.mov")  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", "1",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", out / "one-frame.mp4")  # fmt: skip
    _ffmpeg(*SINE, "-c:a", "aac", out / "tone.m4a")
    _ffmpeg("-i", out / "one-frame.mp4", "-i", out / "tone.m4a", "-map", "0:v", "-map", "1:a",
            "-c", "copy", out / "still-and-audio.mp4")  # fmt: skip
    # MediaRecorder writes live WebM: no duration in the container, none in the streams.
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", *SINE, "-t", "2",
            "-c:v", "libvpx", "-b:v", "300k", "-c:a", "libopus", "-live", "1", "-f", "webm",
            out / "recorded.webm")  # fmt: skip
    _ffmpeg(*SINE, "-c:a", "aac", "-metadata", "title=Voice memo", out / "voice.mp4")
    _ffmpeg(*SINE, "-c:a", "libopus", "-metadata", "title=Voice memo", "-live", "1",
            "-f", "webm", out / "voice.webm")  # fmt: skip
    noise = "nullsrc=s=480x480,format=rgb24,geq=r='random(1)*255':g='random(2)*255':b=0"
    _ffmpeg("-f", "lavfi", "-i", noise, "-frames:v", "1", out / "cover.png")  # > 250 KB
    cover = ("-i", out / "cover.png", "-map", "0", "-map", "1", "-c:v", "copy",
             "-disposition:v", "attached_pic")  # fmt: skip
    _ffmpeg(*SINE, *cover, "-c:a", "libmp3lame", "-id3v2_version", "3", out / "song.mp3")
    _ffmpeg(*SINE, *cover, "-c:a", "flac", out / "song.flac")
    # faststart: the moov box, cover art included, comes before the sound
    _ffmpeg(*SINE, *cover, "-c:a", "aac", "-movflags", "+faststart", out / "song.m4a")
    assert _probe(out / "recorded.webm")["format"].get("duration") is None
    return {path.name: path for path in out.iterdir()}


async def _download(client: Client, variant: dict[str, Any], folder: Path) -> Path:
    response = await client.request("GET", variant["url"])
    assert response.status == 200
    path = folder / f"{variant['name']}.{variant['url'].rsplit('.', 1)[-1]}"
    path.write_bytes(response.body)
    return path


def _assert_no_metadata(probe: dict[str, Any], what: str) -> None:
    assert set(probe["format"].get("tags", {})) <= OWN_TAGS, (what, probe["format"])
    assert probe["chapters"] == [], what
    for stream in probe["streams"]:
        assert set(stream.get("tags", {})) <= OWN_TAGS, (what, stream.get("tags"))
        rotations = [s for s in stream.get("side_data_list", []) if s.get("rotation")]
        assert rotations == [], (what, rotations)


def _variants(media: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in media["variants"]}


async def test_phone_video_upright_and_without_its_metadata(
    client: Client, user: Caller, av: dict[str, Path], tmp_path: Path
) -> None:
    """Rotation 90 applied to the pixels, the GPS tag, comment, title, chapters and stream
    titles gone from the optimized and the resized copy."""
    original = _probe(av["phone.mov"])
    assert "location" in original["format"]["tags"] and original["chapters"]
    media = await upload_settled(client, user, "IMG_0003.MOV", av["phone.mov"].read_bytes())
    assert media["status"] == "ready", media["error"]
    assert (media["width"], media["height"]) == (720, 1280)
    assert media["duration"] == pytest.approx(2.0, abs=0.1)
    body = {"operations": ["resize"], "options": {"resize": {"width": 200, "height": 200}}}
    path = f"{API}/{media['id']}/process/"
    assert (await client.request("POST", path, token=user.token, json_body=body)).status == 202
    made = _variants(await settled(client, user.token, media["id"]))
    assert (made["thumbnail"]["width"], made["thumbnail"]["height"]) == (180, 320)
    expected = {"optimized": (404, 720), "resize-200x200": (112, 200)}
    for name, (width, height) in expected.items():
        assert (made[name]["width"], made[name]["height"]) == (width, height)
        probe = _probe(await _download(client, made[name], tmp_path))
        _assert_no_metadata(probe, name)
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert (video["width"], video["height"]) == (width, height), name
        assert float(probe["format"]["duration"]) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("name", "duration"), [("one-frame.mp4", 0.04), ("still-and-audio.mp4", 2.0)]
)
async def test_poster_of_a_video_with_a_single_frame(
    client: Client, user: Caller, av: dict[str, Path], name: str, duration: float
) -> None:
    media = await upload_settled(client, user, name, av[name].read_bytes())
    assert media["status"] == "ready", media["error"]
    assert media["duration"] == pytest.approx(duration, abs=0.05)
    made = _variants(media)
    assert (made["thumbnail"]["width"], made["thumbnail"]["height"]) == (320, 240)
    poster = await client.request("GET", made["thumbnail"]["url"])
    assert poster.body[:3] == b"\xff\xd8\xff" and len(poster.body) > 1000
    assert made["optimized"]["content_type"] == "video/mp4"
    assert media["job"]["attempts"] == 1


async def test_recorded_webm_gets_its_duration_from_the_streams(
    client: Client, user: Caller, av: dict[str, Path]
) -> None:
    media = await upload_settled(client, user, "recording.webm", av["recorded.webm"].read_bytes())
    assert media["status"] == "ready", media["error"]
    assert media["duration"] == pytest.approx(2.0, abs=0.1)
    assert (media["width"], media["height"]) == (320, 240)


@pytest.mark.parametrize(
    ("name", "upload_as"),
    [("voice.mp4", "memo.mp4"), ("voice.mp4", "memo.m4a"), ("voice.webm", "memo.webm")],
)
async def test_audio_only_video_file_is_processed_as_audio(
    client: Client, user: Caller, av: dict[str, Path], tmp_path: Path, name: str, upload_as: str
) -> None:
    """A voice memo uploaded as .mp4 (or recorded by MediaRecorder as .webm, without a
    duration) gets a waveform and an AAC copy without metadata; its media type stays the
    one of its extension."""
    media = await upload_settled(client, user, upload_as, av[name].read_bytes())
    assert media["status"] == "ready", media["error"]
    assert media["media_type"] == ("audio" if upload_as.endswith(".m4a") else "video")
    assert media["duration"] == pytest.approx(2.0, abs=0.1)
    assert media["width"] is None and media["height"] is None
    made = _variants(media)
    assert made["thumbnail"]["content_type"] == "image/png"
    assert (made["thumbnail"]["width"], made["thumbnail"]["height"]) == (800, 160)
    if media["media_type"] == "video":
        assert made["optimized"]["content_type"] == "audio/mp4"
        probe = _probe(await _download(client, made["optimized"], tmp_path))
        _assert_no_metadata(probe, "optimized")
        assert [s["codec_type"] for s in probe["streams"]] == ["audio"]


@pytest.mark.parametrize("name", ["song.mp3", "song.flac", "song.m4a"])
async def test_audio_with_large_cover_art(
    client: Client, user: Caller, av: dict[str, Path], name: str
) -> None:
    """250 KB of cover art before the sound (an ID3 tag for MP3, a PICTURE block for FLAC,
    the moov box for M4A) is still sniffed right."""
    content = av[name].read_bytes()
    assert len(content) > 250_000
    if name.endswith(".m4a"):
        assert content.find(b"moov") < content.find(b"mdat")
    media = await upload_settled(client, user, name, content)
    assert media["status"] == "ready", media["error"]
    assert media["duration"] == pytest.approx(2.0, abs=0.1)
    assert _variants(media)["thumbnail"]["content_type"] == "image/png"


async def test_presigned_mp3_with_large_cover_art(
    client: Client, user: Caller, av: dict[str, Path]
) -> None:
    content = av["song.mp3"].read_bytes()
    body = {
        "filename": "song.mp3",
        "content_type": "audio/mpeg",
        "file_size": len(content),
        **user.entity,
    }
    answer = await client.request(
        "POST", f"{API}/presigned_upload/", token=user.token, json_body=body
    )
    assert answer.status == 201, answer.body
    put = await client.request(
        "PUT", answer.json["upload_url"], body=content, headers=answer.json["upload_headers"]
    )
    assert put.status in (200, 201, 204), put.body
    media_id = answer.json["media_id"]
    confirmed = await client.request("POST", f"{API}/{media_id}/confirm_upload/", token=user.token)
    assert confirmed.status == 200, confirmed.body
    assert (await settled(client, user.token, media_id))["status"] == "ready"


def test_optimized_video_fits_the_jobs_resize_box(
    av: dict[str, Path], tmp_path: Path, pool: ProcessPoolExecutor
) -> None:
    """With options.resize but not the resize operation, the optimized copy fits the box
    (and a box larger than the video does not upscale it)."""
    results = {}
    for box in ((300, 300), (4000, 4000)):
        work = tmp_path / f"{box[0]}"
        work.mkdir()
        spec = TaskSpec(
            media_id="m", media_type="video", content_type="video/quicktime",
            extension="mov", source=str(av["phone.mov"]), work_dir=str(work),
            operations=("optimize",), resize=box,
        )  # fmt: skip
        result = pool.submit(run_task, spec).result()
        assert result.error is None, result.error
        [optimized] = result.variants
        results[box] = (optimized.width, optimized.height)
        video = next(s for s in _probe(Path(optimized.path))["streams"])
        assert (video["width"], video["height"]) == results[box]
    assert results == {(300, 300): (168, 300), (4000, 4000): (404, 720)}
