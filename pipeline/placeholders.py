"""Placeholders: a ThumbHash and its average colour, shown while a thumbnail loads.

The pixels are the image as it is shown (upright, sRGB, alpha kept), fit inside ThumbHash's
100x100 by pyvips. Workers only; the encoder is mediasvc.pipeline.thumbhash.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable

import pyvips

from mediasvc.pipeline import thumbhash
from mediasvc.pipeline.tasks import TaskResult

MAX_SIDE = thumbhash.MAX_SIDE
Placeholder = dict[str, str]  # {"thumbhash": <base64>, "color": "#rrggbb"}


def attach(result: TaskResult, make: Callable[[], Placeholder | None]) -> TaskResult:
    """The result with the placeholder `make` gives in its `info`; unchanged when the job
    failed, `make` gives none or the image cannot be read (a placeholder never fails a job)."""
    if result.error:
        return result
    try:
        made = make()
    except pyvips.Error:
        made = None
    if made is None:
        return result
    return dataclasses.replace(result, info={**result.info, "placeholder": made})


def of_thumbnail(result: TaskResult) -> Placeholder | None:
    """The placeholder of the job's thumbnail (an image's, a poster, a preview): what it
    stands in for while that loads. None when the job made no thumbnail."""
    path = next((v.path for v in result.variants if v.name == "thumbnail"), None)
    return of_file(path) if path else None


def of_file(path: str) -> Placeholder:
    """The placeholder of a derived image file (upright and sRGB already)."""
    return of_pixels(*file_pixels(path))


def of_image(image: pyvips.Image) -> Placeholder:
    """The placeholder of an upright sRGB or grey image."""
    return of_pixels(*pixels(image))


def of_pixels(width: int, height: int, rgba: bytes) -> Placeholder:
    """The placeholder of RGBA pixels at most 100x100."""
    thumb = thumbhash.encode(width, height, rgba)
    return {"thumbhash": base64.b64encode(thumb).decode("ascii"), "color": thumbhash.color(thumb)}


def file_pixels(path: str) -> tuple[int, int, bytes]:
    """The pixels of a derived image file (upright and sRGB already), shrunk on load."""
    return pixels(pyvips.Image.thumbnail(path, MAX_SIDE, height=MAX_SIDE, size="down"))


def pixels(image: pyvips.Image) -> tuple[int, int, bytes]:
    """Width, height and 8-bit RGBA pixels row by row, fit inside 100x100 (alpha is
    premultiplied while shrinking, so transparent pixels lend no colour)."""
    if max(image.width, image.height) > MAX_SIDE:
        image = image.thumbnail_image(MAX_SIDE, height=MAX_SIDE, size="down")
    if image.interpretation != "srgb":  # grey, 16-bit
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if image.bands == 3:
        image = image.bandjoin(255)
    elif image.bands > 4:
        image = image.extract_band(0, n=4)
    return image.width, image.height, bytes(image.write_to_memory())
