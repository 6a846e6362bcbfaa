"""Real small media of each kind, made with ffmpeg, and a PDF and an SVG written by hand."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_samples(folder: Path) -> dict[str, bytes]:
    """One small file of each kind the service accepts, by extension; made in `folder`."""
    image = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=1", "-frames:v", "1"]
    for ext in ("jpg", "png", "gif", "webp"):
        _ffmpeg(*image, str(folder / f"sample.{ext}"))
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine=f=440",
        "-t",
        "1",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-shortest",
        str(folder / "sample.mp4"),
    )
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1", str(folder / "sample.webm")
    )
    tone = ["-f", "lavfi", "-i", "sine=f=440:duration=1"]
    for ext in ("wav", "mp3", "ogg", "flac", "m4a"):
        _ffmpeg(*tone, str(folder / f"sample.{ext}"))
    _ffmpeg(*tone, "-c:a", "aac", "-f", "adts", str(folder / "sample.aac"))
    files = {path.suffix[1:]: path.read_bytes() for path in folder.iterdir()}
    files["pdf"] = tiny_pdf()
    files["svg"] = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10"/></svg>'
    )
    files["txt"] = b"plain text notes\n"
    return files


def tiny_pdf(
    fill: tuple[float, float, float] | None = None, size: tuple[int, int] = (200, 200)
) -> bytes:
    """A valid one-page PDF, written by hand (ffmpeg makes none): blank, or the page filled
    with the RGB colour `fill` (each part from 0 to 1)."""
    width, height = size
    page = f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}]".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"]
    if fill is None:
        objects.append(page + b" >>")
    else:
        paint = " ".join(f"{part:.3f}" for part in fill) + f" rg 0 0 {width} {height} re f"
        stream = paint.encode()
        objects.append(page + b" /Contents 4 0 R >>")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def make_two_colour_video(path: Path, left: str, right: str, size: str = "640x360") -> Path:
    """A one-second H.264 MP4, its left half of one colour and its right half of another
    (colours as ffmpeg reads them: 0xRRGGBB)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"color=c={left}:size={size}:rate=10:duration=1",
        "-vf", f"drawbox=x=iw/2:y=0:w=iw/2:h=ih:color={right}:t=fill",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path),
    )  # fmt: skip
    return path


def make_photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A camera-sized JPEG (12 MP by default, a few MB: grain keeps it from compressing to
    nothing, as a real photo does not)."""
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=1",
        "-vf", "noise=alls=25:allf=t", "-frames:v", "1", "-q:v", "3", str(path),
    )  # fmt: skip
    return path


def text_of(size: int, seed: str) -> bytes:
    """`size` bytes of plain text whose lines differ (a misplaced byte shows in the hash)."""
    out = bytearray()
    number = 0
    while len(out) < size:
        out += f"{seed} line {number:09d} of a long upload\n".encode()
        number += 1
    return bytes(out[:size])
