"""Placeholders of ready media: the ThumbHash and average colour of images, video posters and
PDF previews are byte for byte what the reference implementation (npm `thumbhash`, in Node)
makes of the same pixels, and through the API they decode to the media's shape and colour.
Audio and failed media have none."""

from __future__ import annotations

import asyncio
import base64
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mediasvc.app import Service
from mediasvc.pipeline import thumbhash
from mediasvc.pipeline.tasks import TaskResult, TaskSpec, run_task
from tests.support import vips
from tests.support.client import API, Client
from tests.support.media import Uploader, settled, upload_settled
from tests.support.samples import make_two_colour_video, tiny_pdf
from tests.support.thumbhash import Decoded, reference, reference_missing
from tests.support.tokens import Caller

PDF_FILL = (0.1, 0.3, 0.8)  # (25, 76, 204)
LEFT, RIGHT = (192, 64, 32), (32, 80, 208)  # the halves of the video
KINDS = {  # extension: media type and content type, as the upload would give them
    "jpg": ("image", "image/jpeg"),
    "png": ("image", "image/png"),
    "pdf": ("document", "application/pdf"),
    "mp4": ("video", "video/mp4"),
}


@pytest.fixture(scope="module", autouse=True)
def reference_js() -> None:
    missing = reference_missing()
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def made(pool: ProcessPoolExecutor, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 12 MP phone photo (EXIF orientation 6) and a smaller one, a PNG with transparency,
    a one-colour PDF page and a video of two colours."""
    folder = tmp_path_factory.mktemp("placeholders")
    phone = pool.submit(vips.make_phone_photo, str(folder), 6)
    small = pool.submit(vips.make_phone_photo, str(folder), 6, (1600, 1200))
    png = pool.submit(vips.make_transparent_png, str(folder))
    (folder / "page.pdf").write_bytes(tiny_pdf(PDF_FILL, (300, 200)))
    hexes = ["0x" + bytes(colour).hex() for colour in (LEFT, RIGHT)]
    video = make_two_colour_video(folder / "clip.mp4", *hexes)
    return {
        "photo.jpg": Path(phone.result()),
        "small.jpg": Path(small.result()),
        "logo.png": Path(png.result()),
        "page.pdf": folder / "page.pdf",
        "clip.mp4": video,
    }


def _spec(path: Path, work: Path, *operations: str, **changes: Any) -> TaskSpec:
    work.mkdir(parents=True)
    extension = path.suffix[1:]
    media_type, content_type = KINDS[extension]
    return TaskSpec(
        media_id=work.name, media_type=media_type, content_type=content_type,
        extension=extension, source=str(path), work_dir=str(work),
        operations=operations, **changes,
    )  # fmt: skip


def _thumbnail(result: TaskResult) -> str:
    return next(v.path for v in result.variants if v.name == "thumbnail")


def _close(value: list[float], expected: Any, tolerance: float) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(value, expected, strict=True))


def _rgb(color: str) -> list[float]:
    return [float(int(color[i : i + 2], 16)) for i in (1, 3, 5)]


def _aspect_matches(drawn: Decoded, media: dict[str, Any]) -> bool:
    """The placeholder has the shape of the thumbnail it stands for, coarsely (ThumbHash keeps
    the aspect ratio as a ratio of small counts of terms)."""
    thumb = next(v for v in media["variants"] if v["name"] == "thumbnail")
    ratio = thumb["width"] / thumb["height"]
    return abs(drawn.width / drawn.height - ratio) <= 0.15 * ratio


# ---- the same bytes as the reference


def test_the_encoder_gives_the_references_bytes_on_every_shape_of_input() -> None:
    """Random pixels at the edges of the format: 1x1, one row, one column, the full 100x100,
    with and without transparency, wholly transparent."""
    rng = random.Random(15)
    images = []
    for w, h, alpha in [
        (1, 1, False), (100, 1, False), (1, 100, True), (100, 100, False), (100, 100, True),
        (37, 59, True), (100, 75, False), (3, 2, True),
    ]:  # fmt: skip
        rgba = bytearray(rng.randrange(256) for _ in range(w * h * 4))
        if not alpha:
            rgba[3::4] = b"\xff" * (w * h)
        images.append((w, h, bytes(rgba)))
    images.append((10, 10, bytes(400)))
    expected, _ = reference(encode=images)
    for (w, h, rgba), theirs in zip(images, expected, strict=True):
        thumb = thumbhash.encode(w, h, rgba)
        assert base64.b64encode(thumb).decode() == theirs["thumbhash"], (w, h)
        assert thumbhash.color(thumb) == theirs["color"], (w, h)


def test_placeholders_of_real_media_are_the_references_of_the_same_pixels(
    pool: ProcessPoolExecutor, made: dict[str, Path], tmp_path: Path
) -> None:
    """A 12 MP JPEG stored landscape with EXIF orientation 6, a PNG with transparency, a PDF
    page and a video poster, through the worker's pipeline."""
    names = ["photo.jpg", "logo.png", "page.pdf", "clip.mp4"]
    specs = [_spec(made[name], tmp_path / name, "thumbnail") for name in names]
    results = [f.result() for f in [pool.submit(run_task, spec) for spec in specs]]
    for name, result in zip(names, results, strict=True):
        assert result.error is None and "placeholder" in result.info, (name, result)
    futures = [pool.submit(vips.placeholder_pixels, _thumbnail(r)) for r in results]
    pixels = [future.result() for future in futures]
    assert [(w, h) for w, h, _ in pixels] == [(75, 100), (100, 75), (100, 67), (100, 56)]
    expected, _ = reference(encode=pixels)
    for name, result, (w, h, rgba), theirs in zip(names, results, pixels, expected, strict=True):
        assert result.info["placeholder"] == theirs, name
        thumb = thumbhash.encode(w, h, rgba)
        assert base64.b64encode(thumb).decode() == theirs["thumbhash"], name
        assert bool(thumb[2] & 0x80) == (name == "logo.png"), name  # the alpha flag


def test_without_a_thumbnail_operation_the_placeholder_comes_from_the_original(
    pool: ProcessPoolExecutor, made: dict[str, Path], tmp_path: Path
) -> None:
    """A resize of the 12 MP photo and an optimize of the PNG still get a placeholder (a small
    shrink-on-load of the original), close to the one of a thumbnail."""
    jobs = [
        (made["photo.jpg"], ("resize",), {"resize": (64, 64)}),
        (made["logo.png"], ("optimize",), {}),
    ]
    for path, operations, changes in jobs:
        alone = pool.submit(run_task, _spec(path, tmp_path / f"{path.name}-{operations[0]}",
                                            *operations, **changes))  # fmt: skip
        thumbed = pool.submit(run_task, _spec(path, tmp_path / path.name, "thumbnail"))
        made_alone, made_thumbed = alone.result(), thumbed.result()
        assert made_alone.error is None, made_alone.error
        got, near = made_alone.info["placeholder"], made_thumbed.info["placeholder"]
        assert _close(_rgb(got["color"]), _rgb(near["color"]), 6), (path.name, got, near)
        _, drawn = reference(decode=[got["thumbhash"], near["thumbhash"]])
        assert (drawn[0].width, drawn[0].height) == (drawn[1].width, drawn[1].height)


# ---- through the API


async def test_ready_media_show_placeholders_of_their_shape_and_colour(
    client: Client,
    user: Caller,
    pool: ProcessPoolExecutor,
    made: dict[str, Path],
    samples: dict[str, bytes],
) -> None:
    files = {name: made[name].read_bytes() for name in ("small.jpg", "logo.png", "page.pdf")}
    files |= {"clip.mp4": made["clip.mp4"].read_bytes(), "voice.wav": samples["wav"]}
    answers = await asyncio.gather(
        *(upload_settled(client, user, name, data) for name, data in files.items())
    )
    media = dict(zip(files, answers, strict=True))
    for name, one in media.items():
        assert one["status"] == "ready", (name, one["error"])
    assert media.pop("voice.wav")["placeholder"] is None  # a waveform stands for no image
    photo_mean = pool.submit(vips.mean_colour, str(made["small.jpg"])).result()
    colours = {
        "small.jpg": photo_mean,
        "logo.png": vips.ORANGE,
        "page.pdf": [255 * part for part in PDF_FILL],
        "clip.mp4": [(a + b) / 2 for a, b in zip(LEFT, RIGHT, strict=True)],
    }
    hashes = [one["placeholder"]["thumbhash"] for one in media.values()]
    _, drawings = await asyncio.to_thread(reference, decode=hashes)
    for (name, one), drawn in zip(media.items(), drawings, strict=True):
        assert _aspect_matches(drawn, one), (name, drawn.width, drawn.height)
        assert _close(drawn.mean_colour(), colours[name], 16), (name, drawn.mean_colour())
        assert _close(_rgb(one["placeholder"]["color"]), colours[name], 16), name
    assert media["small.jpg"]["height"] > media["small.jpg"]["width"]  # shown upright
    clip = drawings[3]
    assert _close(clip.mean_colour((0, 0.25)), LEFT, 48), clip.mean_colour((0, 0.25))
    assert _close(clip.mean_colour((0.75, 1)), RIGHT, 48), clip.mean_colour((0.75, 1))
    logo = drawings[1]
    # transparent around an opaque middle, the right quarter half transparent
    assert logo.mean_alpha((0.4, 0.6)) > 100 > 40 > logo.mean_alpha((0, 0.1))
    assert 80 < logo.mean_alpha((0.8, 1)) < 180


async def test_reprocessing_computes_the_placeholder_again(
    client: Client, user: Caller, service: Service, upload_media: Uploader
) -> None:
    """A record without one (written before placeholders) shows null until processed again."""
    media = await settled(client, user.token, (await upload_media(user, "p.png"))["id"])
    placeholder = media["placeholder"]
    assert placeholder is not None and placeholder["color"].startswith("#")
    await service.context.repository.update(media["id"], {"placeholder": None})
    shown = await client.request("GET", f"{API}/{media['id']}/", token=user.token)
    assert shown.json["placeholder"] is None
    body = {"operations": ["thumbnail"]}
    answer = await client.request(
        "POST", f"{API}/{media['id']}/process/", token=user.token, json_body=body
    )
    assert answer.status == 202, answer.body
    again = await settled(client, user.token, media["id"])
    assert again["status"] == "ready" and again["placeholder"] == placeholder
