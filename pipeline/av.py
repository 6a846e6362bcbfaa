"""Video and audio with ffmpeg (argument lists built by ffmpeg-python), in worker processes.

Every ffmpeg/ffprobe run reads only local files (`-protocol_whitelist file`) and only the
container formats of the allow-list (`-format_whitelist`), so a playlist disguised as a
video can read no other file and reach no network. The container is checked by ffprobe,
not by the extension. Each run has a timeout and dies with its worker.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
from typing import Any

import ffmpeg

from mediasvc.pipeline import budget
from mediasvc.pipeline.tasks import Refused, TaskResult, TaskSpec, Variant

VIDEO_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "avi", "matroska,webm"})
AUDIO_FORMATS = frozenset({"mp3", "wav", "ogg", "aac", "flac", "mov,mp4,m4a,3gp,3g2,mj2"})
_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm,mp3,wav,ogg,aac,flac"
SAFE_INPUT = {"protocol_whitelist": "file", "format_whitelist": _DEMUXERS}
_PR_SET_PDEATHSIG = 1


def process(spec: TaskSpec) -> TaskResult:
    """Probe, then make the derived files the operations ask for."""
    info = probe(spec)
    if spec.media_type == "audio":
        variants = [_waveform(spec)] if "thumbnail" in spec.operations else []
        return TaskResult(variants=tuple(variants), info=info)
    variants = []
    if "thumbnail" in spec.operations:
        variants.append(_poster(spec, info))
    if "optimize" in spec.operations:
        variants.append(_transcode(spec, info, "optimized", None, spec.limits.video_max_height))
    if "resize" in spec.operations and spec.resize:
        width, height = spec.resize
        variants.append(_transcode(spec, info, f"resize-{width}x{height}", width, height))
    return TaskResult(variants=tuple(variants), info=info)


def probe(spec: TaskSpec) -> dict[str, Any]:
    """Container, streams, size and duration; refuses formats outside the allow-list."""
    args = [
        "ffprobe", "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", _DEMUXERS,
        "-show_format", "-show_streams", "-of", "json", f"file:{spec.source}",
    ]  # fmt: skip
    out = _run(args, spec, "read the file")
    try:
        data = json.loads(out)
    except ValueError:
        raise Refused("Cannot read the file: ffprobe gave no result") from None
    return _describe(data, spec)


def _describe(data: dict[str, Any], spec: TaskSpec) -> dict[str, Any]:
    container = data.get("format", {}).get("format_name", "")
    allowed = VIDEO_FORMATS if spec.media_type == "video" else AUDIO_FORMATS
    if container not in allowed:
        raise Refused(f"Container format '{container or 'unknown'}' is not allowed")
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if spec.media_type == "video" and video is None:
        raise Refused("The file has no video stream")
    if spec.media_type == "audio" and audio is None:
        raise Refused("The file has no audio stream")
    if spec.media_type == "video":
        budget.check_video(streams, data["format"], spec.limits)
    info: dict[str, Any] = {
        "container": container,
        "duration": _float(data["format"].get("duration")),
    }
    bitrate = data["format"].get("bit_rate")
    if bitrate and str(bitrate).isdigit():
        info["bitrate"] = int(bitrate)
    if audio is not None:
        info["audio_codec"] = audio.get("codec_name")
    if spec.media_type == "video" and video is not None:
        width, height = int(video.get("width") or 0), int(video.get("height") or 0)
        if _rotation(video) in (90, 270):
            width, height = height, width
        info.update(width=width, height=height, video_codec=video.get("codec_name"))
        info["has_audio"] = audio is not None
    return info


def _poster(spec: TaskSpec, info: dict[str, Any]) -> Variant:
    """A frame a little way in (or the first, for very short clips), fit to the thumbnail box."""
    size = spec.limits.thumbnail_size
    moment = min(1.0, (info.get("duration") or 0) / 2)
    path = os.path.join(spec.work_dir, "thumbnail.jpg")
    width, height = _fit(info["width"], info["height"], size, size)
    stream = ffmpeg.input(f"file:{spec.source}", ss=f"{moment:.3f}", **SAFE_INPUT)
    stream = stream.filter("scale", width, height)
    args = stream.output(f"file:{path}", vframes=1, **{"q:v": 3}).compile(overwrite_output=True)
    _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "make a poster frame")
    return Variant("thumbnail", path, "image/jpeg", width, height)


def _transcode(
    spec: TaskSpec, info: dict[str, Any], name: str, max_w: int | None, max_h: int
) -> Variant:
    """H.264/AAC MP4 with faststart, fit inside max_w x max_h, never upscaled."""
    path = os.path.join(spec.work_dir, f"{name}.mp4")
    source = ffmpeg.input(f"file:{spec.source}", **SAFE_INPUT)
    width, height = _fit(info["width"], info["height"], max_w or info["width"], max_h)
    width, height = width - width % 2, height - height % 2
    video = source.video.filter("scale", width, height)
    streams = [video, source.audio] if info.get("has_audio") else [video]
    audio_options = {"acodec": "aac", "audio_bitrate": "128k"} if info.get("has_audio") else {}
    output = ffmpeg.output(
        *streams,
        f"file:{path}",
        vcodec="libx264",
        preset="veryfast",
        crf=23,
        pix_fmt="yuv420p",
        movflags="+faststart",
        threads=2,
        **audio_options,
    )
    args = output.compile(overwrite_output=True)
    _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "transcode the video")
    return Variant(name, path, "video/mp4", width, height)


def _waveform(spec: TaskSpec) -> Variant:
    """The audio's waveform drawn as a PNG image."""
    width, height = (int(n) for n in spec.limits.waveform_size.split("x"))
    path = os.path.join(spec.work_dir, "thumbnail.png")
    stream = ffmpeg.input(f"file:{spec.source}", **SAFE_INPUT).audio
    stream = stream.filter(
        "showwavespic", s=f"{width}x{height}", split_channels=0, colors="#2563eb"
    )
    args = stream.output(f"file:{path}", vframes=1).compile(overwrite_output=True)
    _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "draw the waveform")
    return Variant("thumbnail", path, "image/png", width, height)


def _run(args: list[str], spec: TaskSpec, what: str) -> str:
    """Run ffmpeg/ffprobe: an argument list, never a shell; killed with the worker, and
    stopped by the kernel at what is left of the job's CPU budget."""
    child = budget.ChildLimit()
    try:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=spec.limits.timeout,
            preexec_fn=child.preexec(_die_with_parent),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise Refused(
            f"Could not {what}: ffmpeg took longer than {spec.limits.timeout:.0f}s"
        ) from None
    child.check(result.returncode)
    if result.returncode != 0:
        raise Refused(f"Could not {what}: {_reason(result.stderr, spec)}")
    return result.stdout.decode(errors="replace")


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _reason(stderr: bytes, spec: TaskSpec) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else "ffmpeg failed"
    last = last.replace(f"file:{spec.source}", "file").replace(spec.source, "file")
    return re.sub(r"(file:)?/[^\s:']+", "file", last)[:200]


def _fit(width: int, height: int, max_w: int, max_h: int) -> tuple[int, int]:
    scale = min(1.0, max_w / width, max_h / height) if width and height else 1.0
    return max(2, round(width * scale)), max(2, round(height * scale))


def _rotation(video: dict[str, Any]) -> int:
    rotate = video.get("tags", {}).get("rotate")
    for side in video.get("side_data_list", []):
        if "rotation" in side:
            rotate = side["rotation"]
    try:
        return abs(int(float(rotate or 0))) % 360
    except ValueError:
        return 0


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None
