"""Video and audio with ffmpeg (argument lists built by ffmpeg-python), in worker processes.

Every ffmpeg/ffprobe run reads only local files (`-protocol_whitelist file`) and only the
container formats of the allow-list (`-format_whitelist`), so a playlist disguised as a
video can read no other file and reach no network. The container is checked by ffprobe,
not by the extension. Each run has a timeout and dies with its worker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import ffmpeg

from mediasvc.pipeline import budget, placeholders
from mediasvc.pipeline.tasks import (
    Operation,
    Refused,
    TaskResult,
    TaskSpec,
    Variant,
    run_operations,
)

VIDEO_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "avi", "matroska,webm"})
AUDIO_FORMATS = frozenset({"mp3", "wav", "ogg", "aac", "flac", "mov,mp4,m4a,3gp,3g2,mj2"})
_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,avi,matroska,webm,mp3,wav,ogg,aac,flac"
SAFE_INPUT = {"protocol_whitelist": "file", "format_whitelist": _DEMUXERS}
# Derived files carry nothing of the original's metadata (place, titles, comments,
# chapters, per-stream tags); the rotation is applied to the pixels, not copied.
_NO_METADATA = {
    "map_metadata": "-1",
    "map_metadata:s:v": "-1",
    "map_metadata:s:a": "-1",
    "map_chapters": "-1",
}
_SHORT_CLIP = 2.0  # seconds: shorter clips show their first frame


def process(spec: TaskSpec) -> TaskResult:
    """Probe, then make the derived files the operations ask for, each on its own, and the
    placeholder of the poster frame.

    A video upload that holds only audio (an .mp4 of a voice memo) is processed as audio:
    a waveform for its thumbnail and an AAC copy for `optimize`; its media type stays the
    one its extension gave.
    """
    info = probe(spec)
    if spec.media_type == "audio" or info.get("audio_only"):
        return run_operations(_audio_operations(spec), info)
    operations: list[Operation] = []
    if "thumbnail" in spec.operations:
        operations.append(("thumbnail", lambda: [_poster(spec, info)]))
    if "optimize" in spec.operations:
        max_w, max_h = _optimize_box(spec)
        operations.append(("optimize", lambda: [_transcode(spec, info, "optimized", max_w, max_h)]))
    if "resize" in spec.operations and spec.resize:
        width, height = spec.resize
        name = f"resize-{width}x{height}"
        operations.append(("resize", lambda: [_transcode(spec, info, name, width, height)]))
    result = run_operations(operations, info)
    # A job that makes no poster leaves the media the placeholder of the poster it keeps.
    return placeholders.attach(result, lambda: placeholders.of_thumbnail(result))


def _audio_operations(spec: TaskSpec) -> list[Operation]:
    operations: list[Operation] = []
    if "thumbnail" in spec.operations:
        operations.append(("thumbnail", lambda: [_waveform(spec)]))
    if "optimize" in spec.operations and spec.media_type == "video":
        operations.append(("optimize", lambda: [_audio_copy(spec, "optimized")]))
    return operations  # `resize` has no pixels to work on


def _optimize_box(spec: TaskSpec) -> tuple[int | None, int]:
    """The optimized copy fits the job's resize box when the job has one without the
    `resize` operation; else it is at most `video_max_height` high."""
    if spec.resize and "resize" not in spec.operations:
        width, height = spec.resize
        return width, min(height, spec.limits.video_max_height)
    return None, spec.limits.video_max_height


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
    if not isinstance(data.get("format"), dict):
        raise Refused("Cannot read the file: ffprobe gave no result")
    _fill_duration(data, spec)
    return _describe(data, spec)


def _fill_duration(data: dict[str, Any], spec: TaskSpec) -> None:
    """Give the container a duration when it has none (a MediaRecorder WebM has none):
    the longest stream's, else the end of the last packet, read without decoding."""
    form = data["format"]
    if _float(form.get("duration")) is not None:
        return
    streams = data.get("streams", [])
    lengths = [_float(s.get("duration")) for s in streams]
    lengths += [_clock(s.get("tags", {}).get("DURATION")) for s in streams]
    known = [length for length in lengths if length is not None]
    form["duration"] = max(known) if known else _last_packet_end(spec)


def _last_packet_end(spec: TaskSpec) -> float | None:
    """Where the last packet ends: a demux-only pass over the file (no decoding)."""
    args = [
        "ffprobe", "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", _DEMUXERS,
        "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", f"file:{spec.source}",
    ]  # fmt: skip
    end = None
    for line in _run(args, spec, "read the duration").splitlines():
        pts, _, duration = line.partition(",")
        start = _float(pts)
        if start is not None:
            end = max(end or 0.0, start + (_float(duration) or 0.0))
    return round(end, 3) if end is not None else None


def _describe(data: dict[str, Any], spec: TaskSpec) -> dict[str, Any]:
    container = data.get("format", {}).get("format_name", "")
    allowed = VIDEO_FORMATS if spec.media_type == "video" else AUDIO_FORMATS
    if container not in allowed:
        raise Refused(f"Container format '{container or 'unknown'}' is not allowed")
    streams = data.get("streams", [])
    video = next((s for s in streams if _is_picture(s)), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if spec.media_type == "video" and video is None and audio is None:
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
        info["video_stream"] = [s for s in streams if s.get("codec_type") == "video"].index(video)
    if spec.media_type == "video" and video is None:
        info["audio_only"] = True
    return info


def _is_picture(stream: dict[str, Any]) -> bool:
    """A video stream that moves: cover art attached to audio (attached_pic) is not one."""
    attached = stream.get("disposition", {}).get("attached_pic") == 1
    return stream.get("codec_type") == "video" and not attached


def _video_of(source: Any, info: dict[str, Any]) -> Any:
    """The moving video stream of an input (not cover art that may come before it)."""
    return source[f"v:{info.get('video_stream', 0)}"]


def _poster(spec: TaskSpec, info: dict[str, Any]) -> Variant:
    """A frame a little way in, fit to the thumbnail box; the first frame when the clip
    is short or has no frame there (one still frame beside a long audio track)."""
    size = spec.limits.thumbnail_size
    path = os.path.join(spec.work_dir, "thumbnail.jpg")
    width, height = _fit(info["width"], info["height"], size, size)
    duration = info.get("duration") or 0.0
    moments = [min(1.0, duration / 2), 0.0] if duration >= _SHORT_CLIP else [0.0]
    for moment in moments:
        options = {"ss": f"{moment:.3f}"} if moment else {}
        stream = ffmpeg.input(f"file:{spec.source}", **options, **SAFE_INPUT)
        stream = _video_of(stream, info).filter("scale", width, height)
        output = stream.output(f"file:{path}", vframes=1, **{"q:v": 3}, **_NO_METADATA)
        args = output.compile(overwrite_output=True)
        _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "make a poster frame")
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return Variant("thumbnail", path, "image/jpeg", width, height)
    raise Refused("Could not make a poster frame: the video has no frame to show")


def _transcode(
    spec: TaskSpec, info: dict[str, Any], name: str, max_w: int | None, max_h: int
) -> Variant:
    """H.264/AAC MP4 with faststart, fit inside max_w x max_h, never upscaled."""
    path = os.path.join(spec.work_dir, f"{name}.mp4")
    source = ffmpeg.input(f"file:{spec.source}", **SAFE_INPUT)
    width, height = _fit(info["width"], info["height"], max_w or info["width"], max_h)
    width, height = width - width % 2, height - height % 2
    video = _video_of(source, info).filter("scale", width, height)
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
        **_NO_METADATA,
    )
    args = output.compile(overwrite_output=True)
    _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "transcode the video")
    return Variant(name, path, "video/mp4", width, height)


def _audio_copy(spec: TaskSpec, name: str) -> Variant:
    """The audio track alone as AAC in MP4 (.m4a), metadata and cover art left out."""
    path = os.path.join(spec.work_dir, f"{name}.m4a")
    audio = ffmpeg.input(f"file:{spec.source}", **SAFE_INPUT).audio
    output = audio.output(
        f"file:{path}",
        acodec="aac",
        audio_bitrate="128k",
        movflags="+faststart",
        vn=None,
        **_NO_METADATA,
    )
    args = output.compile(overwrite_output=True)
    _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "transcode the audio")
    return Variant(name, path, "audio/mp4")


def _waveform(spec: TaskSpec) -> Variant:
    """The audio's waveform drawn as a PNG image."""
    width, height = (int(n) for n in spec.limits.waveform_size.split("x"))
    path = os.path.join(spec.work_dir, "thumbnail.png")
    stream = ffmpeg.input(f"file:{spec.source}", **SAFE_INPUT).audio
    stream = stream.filter(
        "showwavespic", s=f"{width}x{height}", split_channels=0, colors="#2563eb"
    )
    output = stream.output(f"file:{path}", vframes=1, **_NO_METADATA)
    args = output.compile(overwrite_output=True)
    _run(["ffmpeg", "-nostdin", "-v", "error", *args[1:]], spec, "draw the waveform")
    return Variant("thumbnail", path, "image/png", width, height)


def run_ffmpeg(args: list[str], spec: TaskSpec, what: str) -> str:
    """Run ffmpeg with these arguments (inputs with SAFE_INPUT's options), as the video
    steps do; `what` completes "Could not ..." in the reason if it fails."""
    return _run(["ffmpeg", "-nostdin", "-v", "error", *args], spec, what)


def _run(args: list[str], spec: TaskSpec, what: str) -> str:
    """Run ffmpeg/ffprobe: an argument list, never a shell; killed with the worker, and
    stopped by the kernel at what is left of the job's CPU budget."""
    try:
        result = budget.run_child(args, spec.limits.timeout)
    except subprocess.TimeoutExpired:
        raise Refused(
            f"Could not {what}: ffmpeg took longer than {spec.limits.timeout:.0f}s"
        ) from None
    if result.returncode != 0:
        raise Refused(f"Could not {what}: {_reason(result.stderr, spec)}")
    return result.stdout.decode(errors="replace")


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


def _clock(value: Any) -> float | None:
    """Seconds of a Matroska DURATION tag ("00:01:02.500000000")."""
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", str(value or "").strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None
