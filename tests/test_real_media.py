"""Media shaped as phones, cameras and editors make them, made by the tests: 12 MP photos
in every EXIF orientation, wide-gamut ICC profiles, CMYK, 16-bit, palette and interlaced
images. The pipeline runs in a worker pool of the tests' own (real pyvips, real libvips
loaders); a few go through the whole service too."""

from __future__ import annotations

import base64
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mediasvc.pipeline.tasks import Limits, TaskResult, TaskSpec, run_task
from tests.support import vips
from tests.support.client import Client
from tests.support.media import upload_settled
from tests.support.tokens import Caller


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-media")


@pytest.fixture(scope="module")
def photos(pool: ProcessPoolExecutor, folder: Path) -> dict[Any, str]:
    """12 MP JPEGs in orientations 1-8, and a 12 MP PNG with orientation 6 in eXIf."""
    jpegs = pool.submit(vips.make_oriented_photos, str(folder))
    png = pool.submit(vips.make_oriented_png, str(folder))
    return {**jpegs.result(), "png": png.result()}


@pytest.fixture(scope="module")
def images(pool: ProcessPoolExecutor, folder: Path) -> dict[str, str]:
    return pool.submit(vips.make_special_images, str(folder)).result()


def _spec(path: str, work: Path, *operations: str, **changes: Any) -> TaskSpec:
    work.mkdir(parents=True, exist_ok=True)
    extension = path.rsplit(".", 1)[-1]
    return TaskSpec(
        media_id=work.name,
        media_type="image",
        content_type=f"image/{extension}",
        extension=extension,
        source=path,
        work_dir=str(work),
        operations=operations or ("thumbnail", "optimize"),
        **changes,
    )


def _run_all(pool: ProcessPoolExecutor, specs: list[TaskSpec]) -> list[TaskResult]:
    return [future.result() for future in [pool.submit(run_task, spec) for spec in specs]]


def _inspect_all(pool: ProcessPoolExecutor, result: TaskResult) -> dict[str, dict[str, Any]]:
    futures = {v.name: pool.submit(vips.inspect, v.path) for v in result.variants}
    return {name: future.result() for name, future in futures.items()}


def _close(value: list[float], expected: Any, tolerance: float) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(value, expected, strict=False))


# ---- orientation


def test_twelve_megapixel_photos_in_every_orientation(
    pool: ProcessPoolExecutor, photos: dict[Any, str], tmp_path: Path
) -> None:
    """Every orientation at full resolution: no out-of-order read, every variant upright
    (the red corner top left, the blue one top right), no EXIF left."""
    keys = [*range(1, 9), "png"]
    results = _run_all(pool, [_spec(photos[k], tmp_path / str(k)) for k in keys])
    for key, result in zip(keys, results, strict=True):
        assert result.error is None, (key, result.error)
        portrait = key == "png" or int(key) >= 5
        upright = (3024, 4032) if portrait else (4032, 3024)
        assert (result.info["width"], result.info["height"]) == upright, key
        made = _inspect_all(pool, result)
        assert set(made) == {"thumbnail", "optimized", "optimized_webp"}
        thumb = (240, 320) if portrait else (320, 240)
        assert (made["thumbnail"]["width"], made["thumbnail"]["height"]) == thumb, key
        for name, seen in made.items():
            if name != "thumbnail":
                assert (seen["width"], seen["height"]) == upright, (key, name)
            assert _close(seen["top_left"], vips.RED, 12), (key, name, seen["top_left"])
            assert _close(seen["top_right"], vips.BLUE, 12), (key, name, seen["top_right"])
            assert seen["metadata"] == [], (key, name)
        variants = {v.name: v for v in result.variants}
        assert (variants["optimized"].width, variants["optimized"].height) == upright
        # The placeholder stands for the upright picture: ThumbHash's landscape flag.
        placeholder = base64.b64decode(result.info["placeholder"]["thumbhash"])
        assert bool(placeholder[4] & 0x80) is not portrait, key


@pytest.mark.parametrize("name", ["small-orientation-6.webp", "small-orientation-8.jpg"])
def test_smaller_photos_with_orientation(
    pool: ProcessPoolExecutor, images: dict[str, str], tmp_path: Path, name: str
) -> None:
    [result] = _run_all(pool, [_spec(images[name], tmp_path)])
    assert result.error is None, result.error
    assert (result.info["width"], result.info["height"]) == (1200, 1600)
    for variant, seen in _inspect_all(pool, result).items():
        assert _close(seen["top_left"], vips.RED, 12), (variant, seen["top_left"])
        assert _close(seen["top_right"], vips.BLUE, 12), (variant, seen["top_right"])
        assert seen["height"] > seen["width"] and seen["metadata"] == [], variant


# ---- colour


@pytest.mark.parametrize(
    "name", ["p3.jpg", "p3.heic", "p3.avif", "p3.webp", "p3-16bit.png", "adobe-rgb.jpg"]
)
def test_wide_gamut_profiles_become_srgb(
    pool: ProcessPoolExecutor, images: dict[str, str], tmp_path: Path, name: str
) -> None:
    """A Display P3 or Adobe RGB green made from sRGB (30, 200, 40) comes back as that
    green in every derived file (ignoring the profile gives about (94, 196, 69))."""
    [result] = _run_all(pool, [_spec(images[name], tmp_path)])
    assert result.error is None, result.error
    for variant, seen in _inspect_all(pool, result).items():
        assert _close(seen["centre"], vips.GREEN, 6), (variant, seen["centre"])
        assert seen["metadata"] == [], variant  # untagged: sRGB


def test_cmyk_jpeg_is_converted_to_srgb(
    pool: ProcessPoolExecutor, images: dict[str, str], tmp_path: Path
) -> None:
    [result] = _run_all(pool, [_spec(images["cmyk.jpg"], tmp_path)])
    assert result.error is None, result.error
    expected = pool.submit(vips.reference_srgb, images["cmyk.jpg"]).result()
    for variant, seen in _inspect_all(pool, result).items():
        assert seen["bands"] == 3 and seen["interpretation"] == "srgb", variant
        assert _close(seen["centre"], expected, 12), (variant, seen["centre"], expected)
        assert seen["metadata"] == [], variant


@pytest.mark.parametrize(
    ("name", "bands"),
    [
        ("16bit.png", 3),
        ("palette-alpha.png", 4),
        ("interlaced.png", 3),
        ("progressive.jpg", 3),
        ("grey.jpg", 1),
        ("grey-16bit.png", 1),
    ],
)
def test_special_encodings(
    pool: ProcessPoolExecutor, images: dict[str, str], tmp_path: Path, name: str, bands: int
) -> None:
    [result] = _run_all(pool, [_spec(images[name], tmp_path)])
    assert result.error is None, result.error
    assert (result.info["width"], result.info["height"]) == (1200, 900)
    made = _inspect_all(pool, result)
    source = pool.submit(vips.inspect, images[name]).result()
    depth = 257 if name.endswith("16bit.png") else 1  # 16-bit values to 8-bit
    expected = [source["centre"][0] / depth] if bands == 1 else list(vips.GREEN)
    for variant, seen in made.items():
        if variant != "optimized_webp":  # WebP stores grey as RGB
            assert seen["bands"] == bands, variant
        assert _close(seen["centre"], expected, 4), (variant, seen["centre"], expected)
    optimized = {v.name: v for v in result.variants}["optimized"]
    assert optimized.content_type == ("image/png" if bands == 4 else "image/jpeg")
    if bands == 4:
        assert made["optimized"]["centre"][3] == pytest.approx(128, abs=2)


def test_animated_png_stays_animated(
    pool: ProcessPoolExecutor, folder: Path, tmp_path: Path
) -> None:
    """APNG like GIF and WebP: the optimized copy is an animated WebP with every frame
    (fit inside the job's resize box, if any); the APNG's frame count is checked against
    the limit before any decoding."""
    apng = folder / "animated.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
         "-t", "1", "-plays", "0", "-f", "apng", str(apng)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    gif = folder / "animated.gif"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(apng), str(gif)], check=True)
    specs = [
        _spec(str(apng), tmp_path / "a"),
        _spec(str(apng), tmp_path / "b", resize=(80, 80)),
        _spec(str(apng), tmp_path / "c", limits=Limits(max_frames=5)),
        _spec(str(gif), tmp_path / "d", resize=(80, 80)),
    ]
    full, boxed, refused, gif_boxed = _run_all(pool, specs)
    assert full.error is None and boxed.error is None, (full.error, boxed.error)
    assert (full.info["width"], full.info["height"]) == (160, 120)
    for result, size in ((full, (160, 120)), (boxed, (80, 60)), (gif_boxed, (80, 60))):
        optimized = {v.name: v for v in result.variants}["optimized"]
        assert optimized.content_type == "image/webp"
        seen = pool.submit(vips.inspect, optimized.path).result()
        assert (seen["width"], seen["height"], seen["pages"]) == (*size, 10)
        assert seen["metadata"] == []
    assert refused.error == "Animation has 10 frames, over the limit of 5"
    assert refused.variants == ()


# ---- the optimize box and partial failures


def test_optimize_fits_the_jobs_resize_box(
    pool: ProcessPoolExecutor, photos: dict[Any, str], images: dict[str, str], tmp_path: Path
) -> None:
    """`{"operations": ["thumbnail", "optimize"], "options": {"resize": {800, 600}}}`:
    the optimized copy fits 800x600 (a portrait photo: 450x600), never upscaled."""
    specs = [
        _spec(photos[6], tmp_path / "a", resize=(800, 600)),
        _spec(images["p3.jpg"], tmp_path / "b", resize=(2000, 2000)),
        _spec(photos[1], tmp_path / "c", "optimize", "resize", resize=(800, 600)),
    ]
    boxed, small, both = _run_all(pool, specs)
    sizes = {v.name: (v.width, v.height) for v in boxed.variants}
    assert sizes == {"thumbnail": (240, 320), "optimized": (450, 600), "optimized_webp": (450, 600)}
    assert {v.name: (v.width, v.height) for v in small.variants}["optimized"] == (1200, 900)
    sizes = {v.name: (v.width, v.height) for v in both.variants}
    assert sizes["optimized"] == (4032, 3024) and sizes["resize-800x600"] == (800, 600)


def test_truncated_photo_keeps_what_worked(
    pool: ProcessPoolExecutor, photos: dict[Any, str], tmp_path: Path
) -> None:
    """An upload cut short: the thumbnail (shrink-on-load) works, optimize (every pixel)
    fails; the result has both the thumbnail and an error naming optimize."""
    data = Path(photos[6]).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    [result] = _run_all(pool, [_spec(str(cut), tmp_path / "work")])
    assert [v.name for v in result.variants] == ["thumbnail"]
    assert result.error is not None and result.error.startswith("optimize failed: ")
    assert (result.info["width"], result.info["height"]) == (3024, 4032)


# ---- through the service


async def test_portrait_photo_through_the_service(
    client: Client, user: Caller, photos: dict[Any, str]
) -> None:
    media = await upload_settled(client, user, "IMG_0001.JPG", Path(photos[6]).read_bytes())
    assert media["status"] == "ready", media["error"]
    assert (media["width"], media["height"]) == (3024, 4032)
    sizes = {v["name"]: (v["width"], v["height"]) for v in media["variants"]}
    assert sizes == {
        "thumbnail": (240, 320),
        "optimized": (3024, 4032),
        "optimized_webp": (3024, 4032),
    }


async def test_failed_operation_keeps_variants_and_size_on_the_media(
    client: Client, user: Caller, photos: dict[Any, str]
) -> None:
    data = Path(photos[8]).read_bytes()
    media = await upload_settled(client, user, "cut.jpg", data[: len(data) // 2])
    assert media["status"] == "failed"
    assert media["error"].startswith("optimize failed: Cannot decode the image")
    assert (media["width"], media["height"]) == (3024, 4032)
    assert [v["name"] for v in media["variants"]] == ["thumbnail"]
    assert media["placeholder"] is None  # only ready media carry one
    assert media["thumbnail_url"] == media["variants"][0]["url"]
    thumb = await client.request("GET", media["thumbnail_url"])
    assert thumb.status == 200 and thumb.body[:3] == b"\xff\xd8\xff"
    assert media["job"]["state"] == "failed" and media["job"]["attempts"] == 1  # no retry


async def test_p3_heic_through_the_service(
    client: Client,
    user: Caller,
    images: dict[str, str],
    pool: ProcessPoolExecutor,
    tmp_path: Path,
) -> None:
    media = await upload_settled(
        client, user, "IMG_0002.HEIC", Path(images["p3.heic"]).read_bytes()
    )
    assert media["status"] == "ready", media["error"]
    for variant in media["variants"]:
        body = (await client.request("GET", variant["url"])).body
        path = tmp_path / f"{variant['name']}.{variant['content_type'].split('/')[1]}"
        path.write_bytes(body)
        seen = pool.submit(vips.inspect, str(path)).result()
        assert _close(seen["centre"], vips.GREEN, 6), (variant["name"], seen["centre"])
        assert seen["metadata"] == []
