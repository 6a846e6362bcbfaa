"""Encoding benchmark: the JSON of one list page, as dicts and `json.dumps` (before the wire
models) and as `Media` models and msgspec (now).

What it measures
    In process, no server: 100 media records shaped as a processed upload has them (three
    variants, a finished job, texts), presented with a local store's signed URLs. Each way is
    timed over ``--rounds`` pages (best of ``--repeat`` runs), twice:

    * ``encode``: the page already presented (dicts for json.dumps, models for msgspec), only
      turned into JSON bytes;
    * ``present+encode``: records to JSON bytes, as a list request does it (URLs signed).

    The dict presenter is the one the service had before the models (kept here as the
    baseline); its output is checked to equal the models' JSON, so both ways say the same.

Target
    msgspec no slower than json.dumps: every ratio (msgspec time / json time) at most 1.0.

Usage::

    .venv/bin/python bench/encode.py [--rounds 1000] [--repeat 5] [--items 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from mediasvc.models.media import MediaList
from mediasvc.records import Doc, JobRecord, JobState, MediaRecord, MediaStatus
from mediasvc.services.presenter import iso, present_media
from mediasvc.storage import BlobStore
from mediasvc.storage.local import LocalBlobStore, UrlSigner
from mediasvc.wire import encode

BASE_URL = "http://127.0.0.1:8000"


def records(count: int) -> list[MediaRecord]:
    """Processed images with variants and a finished job, as a list page shows them."""
    made = []
    for index in range(count):
        media = MediaRecord.new(
            entity=("service", str(uuid.uuid4())),
            uploaded_by=str(uuid.uuid4()),
            kind_media_type="image",
            content_type="image/jpeg",
            extension="jpg",
            filename=f"gallery photo {index}.jpg",
            now=1_700_000_000_000 + index,
            title=f"Gallery image {index}",
            description="A photo of the treatment room, taken in the morning light.",
            alt_text="A bright room with a massage table",
        )
        media.status, media.file_size, media.width, media.height = (
            MediaStatus.READY,
            2**20,
            1920,
            1080,
        )
        media.sha256 = "ab" * 32
        media.placeholder = {"thumbhash": "odYFHYqAh4eCh3iHiHeHd3CCB9h3", "color": "#6d81a3"}
        key = media.key
        media.thumbnail_key = key.variant("thumbnail", "webp")
        media.variants = [
            {
                "name": name,
                "key": key.variant(name, "webp"),
                "content_type": "image/webp",
                "width": width,
                "height": height,
                "size": size,
            }
            for name, width, height, size in (
                ("thumbnail", 300, 169, 9_000),
                ("optimized", 1920, 1080, 250_000),
                ("webp", 1920, 1080, 200_000),
            )
        ]
        job = JobRecord(
            str(uuid.uuid4()),
            media.id,
            ["thumbnail", "optimize"],
            media.created_at,
            media.created_at,
            state=JobState.DONE,
            attempts=1,
            started_at=media.created_at + 10,
            finished_at=media.created_at + 400,
        )
        media.job = job.summary()
        made.append(media)
    return made


# ---- the baseline: the dict presenter the service had before the wire models


def present_dict(media: MediaRecord, blobs: BlobStore, base_url: str) -> Doc:
    """A media record as the API showed it, as a dict."""
    return {
        "id": media.id,
        "url": blobs.url(media.storage_key, base_url),
        "thumbnail_url": blobs.url(media.thumbnail_key, base_url) if media.thumbnail_key else None,
        "filename": media.filename,
        "file_size": media.file_size,
        "content_type": media.content_type,
        "media_type": media.media_type,
        "entity_type": media.entity_type,
        "entity_id": media.entity_id,
        "title": media.title,
        "description": media.description,
        "alt_text": media.alt_text,
        "status": media.status.value,
        "error": media.error,
        "width": media.width,
        "height": media.height,
        "is_primary": media.is_primary,
        "display_order": media.display_order,
        "view_count": media.view_count,
        "download_count": media.download_count,
        "duration": media.duration,
        "bitrate": media.bitrate,
        "sha256": media.sha256,
        "variants": [
            {
                **{k: v for k, v in variant.items() if k != "key"},
                "url": blobs.url(variant["key"], base_url),
            }
            for variant in media.variants
        ],
        "placeholder": media.placeholder,
        "job": _job_dict(media.job),
        "created_at": iso(media.created_at),
        "updated_at": iso(media.updated_at),
        **({} if media.upload_offset is None else {"upload_offset": media.upload_offset}),
    }


def _job_dict(job: Doc | None) -> Doc | None:
    if job is None:
        return None
    times = ("created_at", "started_at", "finished_at")
    shown = {k: (iso(v) if k in times and v else v) for k, v in job.items()}
    started, finished = job.get("started_at"), job.get("finished_at")
    shown["duration_ms"] = finished - started if started and finished else None
    return shown


def _page(results: Any) -> Any:
    return {
        "count": 5000,
        "next": f"{BASE_URL}/api/v1/drf/media/?cursor=x",
        "previous": None,
        "results": results,
    }


# ---- timing


def best_of(repeat: int, rounds: int, work: Callable[[], bytes | str]) -> float:
    """The fastest of `repeat` runs of `rounds` calls, in seconds per call."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(rounds):
            work()
        best = min(best, time.perf_counter() - started)
    return best / rounds


def measure(items: int, rounds: int, repeat: int) -> dict[str, Any]:
    """Both ways, encode only and present+encode, with their ratios."""
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(1) as pool:
        blobs = LocalBlobStore(Path(folder), UrlSigner("bench-secret", 3600), pool)
        page = records(items)
        dicts = [present_dict(m, blobs, BASE_URL) for m in page]
        models = [present_media(m, blobs, BASE_URL) for m in page]
        as_json = json.loads(json.dumps(_page(dicts)))
        same = as_json == msgspec.json.decode(encode(MediaList(**_page(models))))
        url_free = {
            "json": lambda: json.dumps(_page(dicts)),
            "msgspec": lambda: encode(MediaList(**_page(models))),
        }
        full = {
            "json": lambda: json.dumps(_page([present_dict(m, blobs, BASE_URL) for m in page])),
            "msgspec": lambda: encode(
                MediaList(**_page([present_media(m, blobs, BASE_URL) for m in page]))
            ),
        }
        result: dict[str, Any] = {
            "items": items,
            "rounds": rounds,
            "same_json": same,
            "bytes": {
                "json": len(json.dumps(_page(dicts))),
                "msgspec": len(encode(MediaList(**_page(models)))),
            },
        }
        for name, ways in (("encode", url_free), ("present+encode", full)):
            times = {way: best_of(repeat, rounds, work) for way, work in ways.items()}
            result[name] = {
                **{f"{w}_us": t * 1e6 for w, t in times.items()},
                "ratio": times["msgspec"] / times["json"],
            }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=100, help="media per page")
    parser.add_argument("--rounds", type=int, default=1000, help="pages per timed run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best counts")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.items, args.rounds, args.repeat)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"page of {result['items']} media, {result['rounds']} pages per run, best of "
        f"{args.repeat}; same JSON both ways: {result['same_json']}; bytes: "
        f"json.dumps {result['bytes']['json']}, msgspec {result['bytes']['msgspec']}"
    )
    for name in ("encode", "present+encode"):
        row = result[name]
        verdict = "met" if row["ratio"] <= 1.0 else "MISSED"
        print(
            f"{name:>15}: json.dumps {row['json_us']:9.1f} us/page   msgspec "
            f"{row['msgspec_us']:9.1f} us/page   ratio {row['ratio']:.2f} ({verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
