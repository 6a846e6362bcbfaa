"""Images with pyvips, inside worker processes only.

Limits are checked from the header before any pixel is decoded; EXIF orientation is
applied before metadata is stripped; thumbnails shrink on load.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pyvips

from mediasvc.pipeline import budget, placeholders, svg
from mediasvc.pipeline.tasks import (
    Operation,
    Refused,
    TaskResult,
    TaskSpec,
    Variant,
    run_operations,
)

JPEG_QUALITY = 82
WEBP_QUALITY = 80
_ORIENTATION_SWAPS = {5, 6, 7, 8}
_WEBP_METADATA_FLAGS = 0x08 | 0x04  # EXIF and XMP present, in the VP8X header
# Fields that describe the original (place, camera, colour profile, words), never the copy.
_METADATA_PREFIXES = (
    "exif-", "xmp-data", "iptc-data", "icc-profile-data", "orientation", "png-comment-",
    "gif-comment", "jpeg-thumbnail",
)  # fmt: skip


def process(spec: TaskSpec) -> TaskResult:
    """Thumbnail, optimize and resize one image, as the spec's operations ask.

    Each operation runs on its own: one that fails keeps the others' variants, and the
    size as shown is known from the header whatever happens.
    """
    source = _isolated_source(spec)
    header = _checked_header(source, spec)
    width, height = _upright_size(header)
    apng_frames = _apng_frames(source) if spec.extension == "png" else 0
    if apng_frames > 1:
        budget.check_image_header(spec, header.width, header.height, apng_frames)
    # An SVG is drawn once per operation at the size it needs (in a CPU-limited child);
    # the operations then work on those PNGs.
    drawn = svg.rasterise(source, spec) if spec.extension == "svg" else {}
    thumb_source = drawn.get("thumbnail", source)
    optimize_source = drawn.get("optimize", source)
    resize_source = drawn.get("resize", source)
    operations: list[Operation] = []
    if "thumbnail" in spec.operations:
        size = spec.limits.thumbnail_size
        operations.append(
            ("thumbnail", lambda: [_fit(thumb_source, header, spec, "thumbnail", size)])
        )
    if "optimize" in spec.operations and apng_frames > 1:
        operations.append(("optimize", lambda: [_optimize_apng(source, header, spec)]))
    elif "optimize" in spec.operations:
        operations.append(("optimize", lambda: _optimize(optimize_source, header, spec)))
    if "resize" in spec.operations and spec.resize:
        target_w, target_h = spec.resize
        name = f"resize-{target_w}x{target_h}"
        operations.append(
            ("resize", lambda: [_fit(resize_source, header, spec, name, target_w, target_h)])
        )
    result = run_operations(operations, {"width": width, "height": height})
    return placeholders.attach(result, lambda: _placeholder(result, spec, header, drawn))


def _placeholder(
    result: TaskResult, spec: TaskSpec, header: pyvips.Image, drawn: dict[str, str]
) -> placeholders.Placeholder | None:
    """Of the thumbnail just made, which it stands in for; without one, of a small
    shrink-on-load of the original (of an SVG: of a drawing the job made, never drawn here)."""
    made = placeholders.of_thumbnail(result)
    if made is not None:
        return made
    if spec.extension == "svg":
        return placeholders.of_file(next(iter(drawn.values()))) if drawn else None
    side = placeholders.MAX_SIDE
    return placeholders.of_image(_load_fitted(spec.source, header, side, side))


def pdf_preview(spec: TaskSpec) -> TaskResult:
    """A first-page preview of a PDF as its thumbnail."""
    source = _isolated_source(spec)
    header = _checked_header(source, spec, loader_options="page=0")
    size = spec.limits.thumbnail_size
    try:
        image = pyvips.Image.thumbnail(f"{source}[page=0]", size, height=size, size="down")
        image = _bare(_flatten(image))
        path = os.path.join(spec.work_dir, "thumbnail.jpg")
        image.jpegsave(path, Q=JPEG_QUALITY, strip=True, optimize_coding=True)
    except pyvips.Error as exc:
        raise Refused(f"Cannot render the PDF: {_reason(exc, source)}") from None
    variant = Variant("thumbnail", path, "image/jpeg", image.width, image.height)
    pages = _get(header, "n-pages") or 1
    result = TaskResult(variants=(variant,), info={"pages": pages})
    return placeholders.attach(result, lambda: placeholders.of_thumbnail(result))


def _isolated_source(spec: TaskSpec) -> str:
    # SVG may reference files beside it; render a copy alone in the job's own folder.
    if spec.extension != "svg":
        return spec.source
    copy = os.path.join(spec.work_dir, "source.svg")
    shutil.copyfile(spec.source, copy)
    return copy


def _checked_header(source: str, spec: TaskSpec, loader_options: str = "") -> pyvips.Image:
    """Open lazily (header only) and refuse what is over the job's budget (pixel bombs,
    animations too long or too big over all frames, PDFs with too many or too big pages)."""
    try:
        name = f"{source}[{loader_options}]" if loader_options else source
        header = pyvips.Image.new_from_file(name, access="sequential")
    except pyvips.Error as exc:
        raise Refused(f"Cannot read the image: {_reason(exc, source)}") from None
    pages = _get(header, "n-pages") or 1
    budget.check_image_header(spec, header.width, _page_height(header), pages)
    return header


def _fit(
    source: str, header: pyvips.Image, spec: TaskSpec, name: str, width: int, height: int = 0
) -> Variant:
    """Fit inside width x height (a square when no height), never upscaled."""
    try:
        # Shrink-on-load keeps this fast; truncation is caught by `optimize`, which
        # decodes every pixel.
        image = _load_fitted(source, header, width, height or width)
        return _save_still(image, spec.work_dir, name)
    except pyvips.Error as exc:
        raise Refused(f"Cannot decode the image: {_reason(exc, source)}") from None


def _load_fitted(
    source: str, header: pyvips.Image, width: int, height: int, fail_on: str = "none"
) -> pyvips.Image:
    """Decode fit inside a box, upright and in sRGB.

    libvips' thumbnail shrinks on load and applies the EXIF orientation after the shrink
    (with the random access a rotation needs), so no orientation, size or format reads
    out of order. An embedded ICC profile (Display P3, Adobe RGB, CMYK) is converted to
    sRGB. Only tagged images are given an export profile: libvips shifts the colours of
    untagged 16-bit and palette PNGs when asked for one (untagged means sRGB already).
    """
    profile = {"export_profile": "srgb"} if _has(header, "icc-profile-data") else {}
    image = pyvips.Image.thumbnail(
        source, width, height=height, size="down", fail_on=fail_on, **profile
    )
    return _to_srgb(image)


def _optimize(source: str, header: pyvips.Image, spec: TaskSpec) -> list[Variant]:
    """A web-ready re-encode with metadata stripped, and a WebP copy.

    Full size, or fit inside the job's resize box when it has one without asking for the
    `resize` operation (the spec's `{"operations": ["thumbnail", "optimize"], "options":
    {"resize": ...}}`). Every pixel is decoded: a truncated file fails here.
    """
    width, height = _optimize_box(header, spec)
    try:
        if (_get(header, "n-pages") or 1) > 1:
            return [_optimize_animation(source, spec, width, height)]
        image = _load_fitted(source, header, width, height, fail_on="truncated")
        main = _save_still(image, spec.work_dir, "optimized")
        webp_path = os.path.join(spec.work_dir, "optimized.webp")
        copy = pyvips.Image.new_from_file(main.path, access="sequential")
        _save_webp(copy, webp_path)
    except pyvips.Error as exc:
        raise Refused(f"Cannot decode the image: {_reason(exc, source)}") from None
    webp = Variant("optimized_webp", webp_path, "image/webp", main.width, main.height)
    return [main, webp]


def _optimize_box(header: pyvips.Image, spec: TaskSpec) -> tuple[int, int]:
    """The box the optimized copy fits in: the resize box of the job, else the image."""
    if spec.resize and "resize" not in spec.operations:
        return spec.resize
    return _upright_size(header)


def _optimize_animation(source: str, spec: TaskSpec, width: int, height: int) -> Variant:
    """Animated GIF/WebP stay animated, as WebP; `height` bounds each frame."""
    image = pyvips.Image.thumbnail(
        f"{source}[n=-1]", width, height=height, size="down", fail_on="truncated"
    )
    path = os.path.join(spec.work_dir, "optimized.webp")
    _save_webp(_to_srgb(image), path)
    return Variant("optimized", path, "image/webp", image.width, _page_height(image))


def _apng_frames(source: str) -> int:
    """Frames of an animated PNG (its acTL chunk comes before the image data), else 0.

    libvips reads only the first frame of an APNG; ffmpeg reads them all.
    """
    with open(source, "rb") as file:
        if file.read(8) != b"\x89PNG\r\n\x1a\n":
            return 0
        while len(head := file.read(8)) == 8:
            kind = head[4:]
            if kind == b"acTL":
                return int.from_bytes(file.read(4), "big")
            if kind == b"IDAT":
                return 0
            file.seek(int.from_bytes(head[:4], "big") + 4, os.SEEK_CUR)
    return 0


def _optimize_apng(source: str, header: pyvips.Image, spec: TaskSpec) -> Variant:
    """An animated PNG stays animated, as WebP like GIFs: decoded and encoded by ffmpeg."""
    from mediasvc.pipeline.av import SAFE_INPUT, run_ffmpeg

    box_w, box_h = _optimize_box(header, spec)
    scale = min(1.0, box_w / header.width, box_h / header.height)
    width, height = max(1, round(header.width * scale)), max(1, round(header.height * scale))
    path = os.path.join(spec.work_dir, "optimized.webp")
    args = [
        "-protocol_whitelist", SAFE_INPUT["protocol_whitelist"], "-format_whitelist", "apng",
        "-f", "apng", "-i", f"file:{source}", "-vf", f"scale={width}:{height}", "-an",
        "-c:v", "libwebp_anim", "-q:v", str(WEBP_QUALITY), "-loop", "0",
        "-map_metadata", "-1", "-y", f"file:{path}",
    ]  # fmt: skip
    run_ffmpeg(args, spec, "convert the animated PNG")
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(_webp_without_metadata(data))
    return Variant("optimized", path, "image/webp", width, height)


def _save_still(image: pyvips.Image, work_dir: str, name: str) -> Variant:
    """JPEG for opaque images, PNG where there is transparency; metadata stripped."""
    image = _bare(image)
    if image.hasalpha():
        path = os.path.join(work_dir, f"{name}.png")
        image.pngsave(path, compression=9, strip=True)
        return Variant(name, path, "image/png", image.width, image.height)
    path = os.path.join(work_dir, f"{name}.jpg")
    image.jpegsave(path, Q=JPEG_QUALITY, strip=True, optimize_coding=True, interlace=True)
    return Variant(name, path, "image/jpeg", image.width, image.height)


def _save_webp(image: pyvips.Image, path: str) -> None:
    """WebP without metadata: libvips 8.14's webpsave writes an EXIF chunk even with
    `strip=True`, so that chunk is taken out before the file is written."""
    data = _bare(image).webpsave_buffer(Q=WEBP_QUALITY, strip=True)
    with open(path, "wb") as file:
        file.write(_webp_without_metadata(data))


def _webp_without_metadata(data: bytes) -> bytes:
    """The RIFF/WebP file without its EXIF and XMP chunks (and their VP8X flags)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return data
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        fourcc = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        chunk = data[offset : offset + 8 + size + (size & 1)]
        offset += len(chunk)
        if fourcc in (b"EXIF", b"XMP "):
            continue
        if fourcc == b"VP8X":
            chunk = chunk[:8] + bytes([chunk[8] & ~_WEBP_METADATA_FLAGS]) + chunk[9:]
        chunks.append(chunk)
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _bare(image: pyvips.Image) -> pyvips.Image:
    """The image without EXIF (GPS, camera), XMP, IPTC, ICC or comments.

    `strip=True` alone is not enough: libvips 8.14's webpsave still writes EXIF and ICC.
    Pixels are sRGB by now, which is what an untagged file means.
    """
    names = [n for n in image.get_fields() if n.startswith(_METADATA_PREFIXES)]
    if not names:
        return image
    image = image.copy()
    for name in names:
        image.remove(name)
    return image


def _to_srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB, or 8-bit grey for grey images (16-bit, CMYK, Lab... converted)."""
    if image.interpretation in ("grey16", "b-w"):
        if image.interpretation != "b-w":
            image = image.colourspace("b-w")
    elif image.interpretation != "srgb":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def _flatten(image: pyvips.Image) -> pyvips.Image:
    image = _to_srgb(image)
    return image.flatten(background=[255, 255, 255]) if image.hasalpha() else image


def _upright_size(header: pyvips.Image) -> tuple[int, int]:
    """Width and height as the image is shown (after EXIF orientation)."""
    if (_get(header, "orientation") or 1) in _ORIENTATION_SWAPS:
        return header.height, header.width
    return header.width, _page_height(header)


def _page_height(image: pyvips.Image) -> int:
    return int(_get(image, "page-height") or image.height)


def _has(image: pyvips.Image, name: str) -> bool:
    return bool(image.get_typeof(name) != 0)


def _get(image: pyvips.Image, name: str) -> Any:
    return image.get(name) if image.get_typeof(name) != 0 else None


def _reason(exc: pyvips.Error, source: str) -> str:
    """The first line of libvips' complaint, without file paths."""
    text = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
    first = text[0] if text else "unknown error"
    first = first.replace(source, "file")
    return re.sub(r"/[^\s:]+", "file", first)[:200]
