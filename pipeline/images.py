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

from mediasvc.pipeline import budget, svg
from mediasvc.pipeline.tasks import Refused, TaskResult, TaskSpec, Variant

JPEG_QUALITY = 82
WEBP_QUALITY = 80
_ORIENTATION_SWAPS = {5, 6, 7, 8}


def process(spec: TaskSpec) -> TaskResult:
    """Thumbnail, optimize and resize one image, as the spec's operations ask."""
    source = _isolated_source(spec)
    header = _checked_header(source, spec)
    width, height = _upright_size(header)
    drawn = svg.rasterise(source, spec) if spec.extension == "svg" else {}
    variants: list[Variant] = []
    if "thumbnail" in spec.operations:
        size = spec.limits.thumbnail_size
        variants.append(_fit(drawn.get("thumbnail", source), spec, "thumbnail", size, size))
    if "optimize" in spec.operations:
        variants += _optimize(drawn.get("optimize", source), header, spec)
    if "resize" in spec.operations and spec.resize:
        target_w, target_h = spec.resize
        resize_source = drawn.get("resize", source)
        name = f"resize-{target_w}x{target_h}"
        variants.append(_fit(resize_source, spec, name, target_w, target_h))
    return TaskResult(variants=tuple(variants), info={"width": width, "height": height})


def pdf_preview(spec: TaskSpec) -> TaskResult:
    """A first-page preview of a PDF as its thumbnail."""
    source = _isolated_source(spec)
    header = _checked_header(source, spec, loader_options="page=0")
    size = spec.limits.thumbnail_size
    try:
        image = pyvips.Image.thumbnail(f"{source}[page=0]", size, height=size, size="down")
        image = _flatten(image)
        path = os.path.join(spec.work_dir, "thumbnail.jpg")
        image.jpegsave(path, Q=JPEG_QUALITY, strip=True, optimize_coding=True)
    except pyvips.Error as exc:
        raise Refused(f"Cannot render the PDF: {_reason(exc, source)}") from None
    variant = Variant("thumbnail", path, "image/jpeg", image.width, image.height)
    pages = _get(header, "n-pages") or 1
    return TaskResult(variants=(variant,), info={"pages": pages})


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


def _fit(source: str, spec: TaskSpec, name: str, width: int, height: int) -> Variant:
    """Fit inside width x height, never upscale; shrink-on-load and EXIF rotation included."""
    try:
        # Shrink-on-load keeps this fast; truncation is caught by `optimize`, which
        # decodes every pixel with fail=True.
        image = pyvips.Image.thumbnail(source, width, height=height, size="down")
        image = _to_srgb(image)
        return _save_still(image, spec.work_dir, name)
    except pyvips.Error as exc:
        raise Refused(f"Cannot decode the image: {_reason(exc, source)}") from None


def _optimize(source: str, header: pyvips.Image, spec: TaskSpec) -> list[Variant]:
    """A web-ready re-encode with metadata stripped, and a WebP copy."""
    animated = (_get(header, "n-pages") or 1) > 1
    try:
        if animated:
            image = pyvips.Image.new_from_file(source, access="sequential", n=-1, fail=True)
            path = os.path.join(spec.work_dir, "optimized.webp")
            image.webpsave(path, Q=WEBP_QUALITY, strip=True)
            page_height = _get(image, "page-height") or image.height
            return [Variant("optimized", path, "image/webp", image.width, page_height)]
        image = pyvips.Image.new_from_file(source, access="sequential", fail=True)
        image = _to_srgb(image.autorot())
        main = _save_still(image, spec.work_dir, "optimized")
        webp_path = os.path.join(spec.work_dir, "optimized.webp")
        pyvips.Image.new_from_file(main.path, access="sequential").webpsave(
            webp_path, Q=WEBP_QUALITY, strip=True
        )
    except pyvips.Error as exc:
        raise Refused(f"Cannot decode the image: {_reason(exc, source)}") from None
    webp = Variant("optimized_webp", webp_path, "image/webp", main.width, main.height)
    return [main, webp]


def _save_still(image: pyvips.Image, work_dir: str, name: str) -> Variant:
    """JPEG for opaque images, PNG where there is transparency; metadata stripped."""
    if image.hasalpha():
        path = os.path.join(work_dir, f"{name}.png")
        image.pngsave(path, compression=9, strip=True)
        return Variant(name, path, "image/png", image.width, image.height)
    path = os.path.join(work_dir, f"{name}.jpg")
    image.jpegsave(path, Q=JPEG_QUALITY, strip=True, optimize_coding=True, interlace=True)
    return Variant(name, path, "image/jpeg", image.width, image.height)


def _to_srgb(image: pyvips.Image) -> pyvips.Image:
    if image.interpretation not in ("srgb", "b-w"):
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


def _get(image: pyvips.Image, name: str) -> Any:
    return image.get(name) if image.get_typeof(name) != 0 else None


def _reason(exc: pyvips.Error, source: str) -> str:
    """The first line of libvips' complaint, without file paths."""
    text = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
    first = text[0] if text else "unknown error"
    first = first.replace(source, "file")
    return re.sub(r"/[^\s:]+", "file", first)[:200]
