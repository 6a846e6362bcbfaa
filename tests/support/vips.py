"""Image making and measuring with pyvips, run in a worker process of the tests' own pool:
the test process is also the server process, which must never import pyvips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ADOBE_RGB = "/usr/share/color/icc/colord/AdobeRGB1998.icc"  # Debian colord-data
GREEN = (30, 200, 40)  # an sRGB colour inside every wide gamut used here
RED, BLUE = (220, 20, 20), (20, 20, 220)
ORANGE = (240, 140, 20)
PHOTO = (4032, 3024)  # a 12 MP phone sensor, landscape as stored
_METADATA = ("exif-data", "xmp-data", "iptc-data", "icc-profile-data", "orientation")


def upright_photo(width: int, height: int) -> Any:
    """Green, with a red block top left and a blue one top right: any rotation or
    mirror of it is visible."""
    import pyvips

    image = (pyvips.Image.black(width, height, bands=3) + list(GREEN)).cast("uchar")
    block_w, block_h = width // 8, height // 8
    image = image.draw_rect(list(RED), 0, 0, block_w, block_h, fill=True)
    image = image.draw_rect(list(BLUE), width - block_w, 0, block_w, block_h, fill=True)
    return image.copy(interpretation="srgb")


def _stored(upright: Any, orientation: int) -> Any:
    """The pixels a camera stores for `upright` shown with EXIF `orientation`."""
    return {
        1: lambda im: im,
        2: lambda im: im.fliphor(),
        3: lambda im: im.rot180(),
        4: lambda im: im.flipver(),
        5: lambda im: im.rot90().fliphor(),
        6: lambda im: im.rot270(),
        7: lambda im: im.rot270().fliphor(),
        8: lambda im: im.rot90(),
    }[orientation](upright)


def make_oriented_photos(folder: str) -> dict[int, str]:
    """12 MP JPEGs stored landscape with EXIF orientations 1-8 (checked with autorot)."""
    return {orientation: make_phone_photo(folder, orientation) for orientation in range(1, 9)}


def make_phone_photo(folder: str, orientation: int, stored: tuple[int, int] = PHOTO) -> str:
    """A JPEG as a phone writes it: stored landscape (`stored`, 12 MP by default) with EXIF
    `orientation` and a description in its EXIF, shown as `upright_photo` (checked)."""
    import pyvips

    width, height = stored if orientation < 5 else stored[::-1]
    image = _stored(upright_photo(width, height), orientation).copy()
    assert (image.width, image.height) == stored
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-ImageDescription", "Secret place")
    path = str(Path(folder) / f"orientation-{orientation}-{stored[0]}.jpg")
    image.jpegsave(path, Q=90)
    shown = pyvips.Image.new_from_file(path).autorot()
    assert _near(shown.getpoint(5, 5), RED), orientation
    return path


def make_oriented_png(folder: str) -> str:
    """A 12 MP PNG stored landscape with orientation 6 in its eXIf chunk."""
    import pyvips

    stored = _stored(upright_photo(*PHOTO[::-1]), 6).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    exif = pyvips.Image.new_from_buffer(stored.jpegsave_buffer(), "").get("exif-data")
    stored.set_type(pyvips.GValue.blob_type, "exif-data", exif)
    path = str(Path(folder) / "orientation-6.png")
    stored.pngsave(path, compression=1)
    assert pyvips.Image.new_from_file(path).get("orientation") == 6
    return path


def make_special_images(folder: str) -> dict[str, str]:
    """Images as devices and editors write them: wide-gamut ICC profiles, CMYK, 16-bit,
    palette with transparency, interlaced and grey; smaller photos with orientation in
    WebP and JPEG."""
    import pyvips

    out = Path(folder)
    base = upright_photo(1200, 900)
    p3 = base.icc_transform("p3", input_profile="srgb")
    adobe = base.icc_transform(ADOBE_RGB, input_profile="srgb")
    cmyk = base.icc_transform("cmyk", input_profile="srgb")
    made = {
        "p3.jpg": lambda p: p3.jpegsave(p, Q=95),
        "p3.heic": lambda p: p3.heifsave(p, Q=90),
        "p3.avif": lambda p: p3.heifsave(p, Q=90, compression="av1"),
        "p3.webp": lambda p: p3.webpsave(p, Q=95),
        "p3-16bit.png": lambda p: base.icc_transform("p3", input_profile="srgb", depth=16).pngsave(
            p
        ),
        "adobe-rgb.jpg": lambda p: adobe.jpegsave(p, Q=95),
        "cmyk.jpg": lambda p: cmyk.jpegsave(p, Q=95),
        "16bit.png": lambda p: (base.cast("ushort") * 257).copy(interpretation="rgb16").pngsave(p),
        "palette-alpha.png": lambda p: base.bandjoin(128).cast("uchar").pngsave(p, palette=True),
        "interlaced.png": lambda p: base.pngsave(p, interlace=True),
        "progressive.jpg": lambda p: base.jpegsave(p, interlace=True),
        "grey.jpg": lambda p: base.colourspace("b-w").jpegsave(p),
        "grey-16bit.png": lambda p: base.colourspace("grey16").pngsave(p),
    }
    paths = {}
    for name, save in made.items():
        paths[name] = str(out / name)
        save(paths[name])
    for orientation, extension in ((6, "webp"), (8, "jpg")):  # 1600x1200 stored, shown portrait
        stored = _stored(upright_photo(1200, 1600), orientation).copy()
        stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
        name = f"small-orientation-{orientation}.{extension}"
        paths[name] = str(out / name)
        stored.write_to_file(paths[name])
    return paths


def make_transparent_png(folder: str) -> str:
    """An 800x600 PNG: an opaque orange block in the middle, the rest transparent (half of
    it fully, the right quarter at half opacity)."""
    import pyvips

    colour = (*ORANGE, 0)
    image = (pyvips.Image.black(800, 600, bands=4) + list(colour)).cast("uchar")
    image = image.draw_rect([*ORANGE, 255], 200, 150, 400, 300, fill=True)
    image = image.draw_rect([*ORANGE, 128], 600, 0, 200, 600, fill=True)
    path = str(Path(folder) / "transparent.png")
    image.copy(interpretation="srgb").pngsave(path)
    return path


def mean_colour(path: str) -> list[float]:
    """The mean sRGB colour of an image file, weighted by its alpha."""
    import pyvips

    image = pyvips.Image.new_from_file(path)
    if not image.hasalpha():
        return [image.extract_band(band).avg() for band in range(3)]
    alpha = image.extract_band(3) / 255
    weight = alpha.avg()
    return [(image.extract_band(band) * alpha).avg() / weight for band in range(3)]


def placeholder_pixels(path: str) -> tuple[int, int, bytes]:
    """The RGBA pixels the pipeline makes the placeholder of a derived image file from."""
    from mediasvc.pipeline import placeholders

    return placeholders.file_pixels(path)


def reference_srgb(path: str) -> list[float]:
    """The centre colour of `path` converted to sRGB by a plain ICC transform."""
    import pyvips

    image = pyvips.Image.new_from_file(path)
    srgb = image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    return [float(v) for v in srgb.getpoint(image.width // 2, image.height // 2)]


def inspect(path: str) -> dict[str, Any]:
    """Size, frames, metadata left in the file, and colours at the corners and centre."""
    import pyvips

    options = {"n": -1} if path.endswith((".webp", ".gif")) else {}
    image = pyvips.Image.new_from_file(path, **options).copy_memory()
    height = int(image.get("page-height")) if image.get_typeof("page-height") else image.height
    width = image.width

    def at(x: float, y: float) -> list[float]:
        return [float(v) for v in image.getpoint(int(width * x), int(height * y))]

    return {
        "width": width,
        "height": height,
        "bands": image.bands,
        "interpretation": image.interpretation,
        "pages": int(image.get("n-pages")) if image.get_typeof("n-pages") else 1,
        "metadata": sorted(n for n in image.get_fields() if n.startswith(_METADATA)),
        "top_left": at(0.03, 0.03),
        "top_right": at(0.97, 0.03),
        "centre": at(0.5, 0.5),
    }


def _near(value: list[float], colour: tuple[int, ...], tolerance: float = 8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(value, colour, strict=False))
