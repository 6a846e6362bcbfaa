"""List benchmark: `GET /api/v1/drf/media/` of a real service over many records.

What it measures
    * A real ``mediasvc serve`` (file-backed embedded database in a temporary data folder,
      processing off) seeded with N media records *through the repository*: pymongo's
      AsyncMongoClient to the server's own embedded database and
      ``MongoMediaRepository.insert_many`` in batches of ``MediaRecord.new`` records (about
      200 media per entity over user, service, practitioner and product entities, a mix of
      media types and statuses, display orders mostly 0, a year of ``created_at``, words in
      filenames, titles and descriptions). The server sees them at once: no restart.
    * The seeding rate (records/s) and the size of the database files.
    * Over one keep-alive HTTP connection, after a warm-up, p50 and p95 of each list shape:
      one entity a user may act on; no filter for a caller with 5 grants (one ``type:*``);
      admin page 1; admin filtered by media type; a deep page reached by following ``next``
      cursor links to a depth of ~40,000 and by ``offset=40000``; search within an entity
      and across a caller's media (the 5-grant caller, a plain user; a word that hits and
      one that misses everywhere). And the p50 of ``GET {id}/`` in the same run: the floor
      of any request (authentication, one indexed read, one write, the JSON answer). The
      floor is timed on its own first, and again interleaved with each shape (one
      ``GET {id}/`` after each timed list request): a shape is judged against the floor of
      its own minutes, so a machine whose load changes during the run (other work on a
      shared machine) moves both alike.

Targets
    At 50,000 and 200,000 records: every list shape p50 <= 10 ms (or <= 3 x the floor, if
    the floor itself is above 3 ms; the floor interleaved with that shape), every search
    p50 <= 50 ms. Larger runs print the same verdicts for reference.

Usage::

    .venv/bin/python bench/list.py [--records 50000] [--requests 100] [--depth 40000]
        [--seed 1] [--json] [--workdir DIR] [--data-dir DIR]

With ``--data-dir`` the seeded folder is kept and a later run with the same ``--records``
and ``--seed`` times it again without seeding (a million records take some 20 minutes).
A request that answers 503 (the service's database timeout) is timed and counted as an
error; its shape is MISSED.

The process exits 0 once it has measured something: a missed target is reported as
MISSED, not as a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from common import (
    LOG_TAIL_LINES,
    REQUEST_TIMEOUT,
    BenchError,
    free_port,
    log_tail,
    progress,
    run_bench,
    running,
    service_command,
    service_default,
    service_env,
    verdict,
    wait_until_answers,
)
from pymongo import AsyncMongoClient

from mediasvc.embedded_db import running_database_uri
from mediasvc.records import MediaRecord, MediaStatus
from mediasvc.repository import MongoMediaRepository

API = "/api/v1/drf/media"
DEFAULT_RECORDS = 50_000
DEFAULT_REQUESTS = 100
DEFAULT_DEPTH = 40_000
WARMUP = 10  # untimed requests before each shape (2 at least, if the shape is slow)
WARMUP_BUDGET = 10.0
SHAPE_BUDGET = 60.0  # seconds one shape may take: a slow shape gets fewer requests (10 at least)
FEWEST = 10
BATCH = 1000
PER_ENTITY = (100, 300)  # media per entity: about 200
TARGETED_UNTIL = 200_000  # the targets are set for up to this many records
LIST_TARGET_MS = 10.0
FLOOR_FACTOR = 3.0
FLOOR_ALLOWANCE_MS = 3.0  # a floor above this raises the list target to 3 x the floor
SEARCH_TARGET_MS = 50.0
DATABASE = service_default("mongodb_database")
SERVICE_SETTINGS = {"MEDIASVC_PROCESSING_ENABLED": "false"}
YEAR_MS = 365 * 24 * 3600 * 1000
ENTITY_TYPES = {"user": 0.4, "service": 0.2, "practitioner": 0.2, "product": 0.2}
GRANTED_TYPE = "practitioner"
MEDIA_KINDS = {  # media type: (weight, [(content type, extension)])
    "image": (0.6, [("image/jpeg", "jpg"), ("image/png", "png"), ("image/webp", "webp")]),
    "video": (0.15, [("video/mp4", "mp4")]),
    "document": (0.15, [("application/pdf", "pdf")]),
    "audio": (0.1, [("audio/mpeg", "mp3")]),
}
STATUSES = {
    MediaStatus.READY: 0.85,
    MediaStatus.PENDING: 0.06,
    MediaStatus.PROCESSING: 0.05,
    MediaStatus.FAILED: 0.04,
}
VOCABULARY = (
    "summer winter spring autumn beach mountain river forest city street garden house room "
    "kitchen office clinic team portrait family friends party wedding birthday concert "
    "lecture meeting report invoice contract brochure manual guide menu poster flyer logo "
    "banner product launch review demo tutorial interview podcast episode recording track "
    "session morning evening night sunset sunrise blue green red golden quiet busy old new "
    "front back side view close wide detail sample draft final version copy scan photo "
    "picture image clip video audio note letter form chart plan map sketch design print"
)
WORDS = VOCABULARY.split()
HIT_WORD = "harbour"  # in about 2% of descriptions
HIT_RATE = 0.02
MISS_WORD = "quetzalcoatl"  # in none
OWN_ELSEWHERE = 60  # uploads of each measured user into other entities


# ---------------------------------------------------------------- the population


@dataclass
class Population:
    """The entities, who uploads to them, and the callers the benchmark measures as."""

    entities: list[tuple[str, str]]
    sizes: list[int]
    staff: list[str]  # uploaders of the entities that are not users
    grantee: str  # a user with 5 grants, one of them `practitioner:*`
    plain: str  # a user with no grant
    grants: list[str] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)  # some media, for the floor


def plan_population(records: int, rng: random.Random) -> Population:
    """Entities of about 200 media each until `records`; two of the users are measured."""
    entities, sizes, left = [], [], records
    types, weights = list(ENTITY_TYPES), list(ENTITY_TYPES.values())
    while left > 0:
        size = min(left, rng.randint(*PER_ENTITY))
        entities.append((rng.choices(types, weights)[0], str(uuid.UUID(int=rng.getrandbits(128)))))
        sizes.append(size)
        left -= size
    users = [e for e in entities if e[0] == "user"]
    others = {t: [e for e in entities if e[0] == t] for t in ("service", "product")}
    if len(users) < 2 or any(len(v) < 2 for v in others.values()):
        raise BenchError(f"{records} records are too few for the benchmark's entities")
    staff = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(max(10, records // 1000))]
    population = Population(entities, sizes, staff, grantee=users[0][1], plain=users[1][1])
    population.grants = [f"{GRANTED_TYPE}:*"] + [
        f"{t}:{i}" for t in ("service", "product") for _, i in others[t][:2]
    ]
    return population


def entity_order(population: Population, rng: random.Random) -> list[int]:
    """Which entity each record goes to, in upload order: entities interleaved over time."""
    order = [index for index, size in enumerate(population.sizes) for _ in range(size)]
    rng.shuffle(order)
    return order


def uploader(population: Population, entity: tuple[str, str], rng: random.Random) -> str:
    """Users upload to their own entity, staff to the others."""
    return entity[1] if entity[0] == "user" else rng.choice(population.staff)


def words(rng: random.Random, low: int, high: int) -> str:
    """Some words of the vocabulary, sometimes the word searches hit."""
    chosen = rng.choices(WORDS, k=rng.randint(low, high))
    if chosen and rng.random() < HIT_RATE:
        chosen[rng.randrange(len(chosen))] = HIT_WORD
    return " ".join(chosen)


def make_record(
    entity: tuple[str, str], uploaded_by: str, created_at: int, rng: random.Random
) -> MediaRecord:
    """One realistic record: ready ones have variants, a thumbnail and a finished job."""
    kinds = list(MEDIA_KINDS)
    media_type = rng.choices(kinds, [MEDIA_KINDS[k][0] for k in kinds])[0]
    content_type, extension = rng.choice(MEDIA_KINDS[media_type][1])
    status = rng.choices(list(STATUSES), list(STATUSES.values()))[0]
    stem = rng.choice(("IMG", "scan", "export", rng.choice(WORDS), rng.choice(WORDS)))
    record = MediaRecord.new(
        entity=entity,
        uploaded_by=uploaded_by,
        kind_media_type=media_type,
        content_type=content_type,
        extension=extension,
        filename=f"{stem}_{rng.randint(1000, 99999)}.{extension}",
        now=created_at,
        title=words(rng, 0, 4).capitalize(),
        description=words(rng, 0, 14) if rng.random() < 0.7 else "",
        status=status,
        display_order=0 if rng.random() < 0.9 else rng.randint(1, 20),
        file_size=rng.randint(20_000, 40_000_000),
        sha256=f"{rng.getrandbits(256):064x}",
    )
    if status is MediaStatus.READY:
        processed(record, rng)
    elif status is MediaStatus.FAILED:
        record.error = "The file could not be decoded"
    return record


def processed(record: MediaRecord, rng: random.Random) -> None:
    """What processing leaves on a ready record: facts, derived files, the job summary."""
    key = record.key
    thumbnail = key.variant("thumbnail", "webp")
    record.variants = [
        {
            "name": "thumbnail",
            "key": thumbnail,
            "content_type": "image/webp",
            "width": 320,
            "height": 240,
            "size": rng.randint(5_000, 30_000),
        },
    ]
    record.thumbnail_key = thumbnail
    if record.media_type in ("image", "video"):
        record.width, record.height = rng.choice(((4000, 3000), (1920, 1080), (1080, 1920)))
    if record.media_type in ("video", "audio"):
        record.duration = round(rng.uniform(5, 900), 2)
    at = record.created_at
    record.job = {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "operations": ["thumbnail"],
        "options": {},
        "state": "done",
        "attempts": 1,
        "error": None,
        "created_at": at,
        "started_at": at + 50,
        "finished_at": at + 900,
    }


def own_elsewhere(population: Population, order: list[int], rng: random.Random) -> dict[int, str]:
    """Records (by position) that a measured user uploaded into an entity not its own:
    practitioners (which the grantee's type grant covers) and services and products."""
    others = [i for i, (t, _) in enumerate(population.entities) if t != "user"]
    positions = rng.sample(range(len(order)), 2 * OWN_ELSEWHERE)
    moved: dict[int, str] = {}
    for n, position in enumerate(positions):
        order[position] = rng.choice(others)
        moved[position] = population.grantee if n % 2 == 0 else population.plain
    return moved


def record_batches(population: Population, rng: random.Random) -> Iterator[list[MediaRecord]]:
    """Every record, oldest first, in batches of `BATCH`."""
    order = entity_order(population, rng)
    moved = own_elsewhere(population, order, rng)
    start = int(time.time() * 1000) - YEAR_MS
    step = YEAR_MS / len(order)
    batch: list[MediaRecord] = []
    for position, index in enumerate(order):
        entity = population.entities[index]
        by = moved.get(position) or uploader(population, entity, rng)
        created_at = start + int(position * step) + rng.randint(0, max(1, int(step)))
        batch.append(make_record(entity, by, created_at, rng))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- seeding


@dataclass
class Seeding:
    """How the records went in."""

    records: int
    seconds: float  # in insert_many, building the records not counted
    wall_seconds: float

    @property
    def rate(self) -> float:
        """Records per second of insert_many."""
        return self.records / self.seconds


async def seed(data_dir: Path, population: Population, rng: random.Random) -> Seeding | None:
    """Insert every record through the repository into the running server's database
    (None: the folder was seeded by an earlier run with the same --records and --seed)."""
    uri = running_database_uri(data_dir)
    if uri is None:
        raise BenchError(f"no embedded database runs for {data_dir}")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        if await reused(client, population):
            return None
        return await insert_all(MongoMediaRepository(client, DATABASE), population, rng)
    finally:
        await client.close()


async def reused(client: AsyncMongoClient[dict[str, Any]], population: Population) -> bool:
    """Whether the database already holds this population (its sample ids then read back)."""
    media = client[DATABASE]["media"]
    held = int((await client[DATABASE].command("count", "media"))["n"])
    if held == 0:
        return False
    if held != sum(population.sizes):
        raise BenchError(f"the data folder holds {held:,} records, not {sum(population.sizes):,}")
    population.sample_ids = [
        doc["_id"] for doc in await media.find({}, {"_id": 1}).limit(200).to_list()
    ]
    progress(f"reusing the {held:,} records of the data folder")
    return True


async def insert_all(
    repository: MongoMediaRepository, population: Population, rng: random.Random
) -> Seeding:
    """Every record of the population, in batches through `insert_many`."""
    progress(f"seeding {sum(population.sizes):,} records through the repository")
    inserted, seconds, wall = 0, 0.0, time.perf_counter()
    for batch in record_batches(population, rng):
        if len(population.sample_ids) < 200:
            population.sample_ids.append(batch[0].id)
        started = time.perf_counter()
        await repository.insert_many(batch)
        seconds += time.perf_counter() - started
        inserted += len(batch)
        if inserted % (BATCH * 50) == 0:
            progress(f"  seeded {inserted:,} records ({inserted / seconds:,.0f}/s)")
    return Seeding(inserted, seconds, time.perf_counter() - wall)


def database_bytes(data_dir: Path) -> int:
    """The size of the embedded database's files (SQLite file, WAL), not its log."""
    kept = ("nx-27017.log", "nx-27017.pid", "nx-27017.port")
    return sum(
        p.stat().st_size for p in (data_dir / "db").rglob("*") if p.is_file() and p.name not in kept
    )


# ---------------------------------------------------------------- requests


class Client:
    """One keep-alive connection to the service; each GET timed until its body is read."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)

    def get(self, path: str, token: str) -> tuple[float, int, dict[str, Any]]:
        """Seconds, status and JSON of one GET (a 503 of a slow query is a figure too)."""
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        try:
            self.connection.request("GET", path, headers=headers)
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise BenchError(f"GET {path}: {exc!r}") from None
        seconds = time.perf_counter() - started
        if response.status not in (200, 503):
            raise BenchError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return seconds, response.status, json.loads(body)

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


@dataclass
class Shape:
    """One kind of request the benchmark times."""

    name: str
    kind: str  # list, search or floor
    token: str
    paths: list[str]  # taken in turn (the floor reads different media)


@dataclass
class Timing:
    """The figures of one shape."""

    name: str
    kind: str
    requests: int
    p50_ms: float
    p95_ms: float
    count: int | None  # the `count` of a list answer
    errors: int = 0  # answers that were not a 200 (503: the database did not answer in time)
    floor_ms: float = 0.0  # p50 of the GET {id}/ requests interleaved with this shape's
    target_ms: float = 0.0
    ok: bool = True


def measure(client: Client, shape: Shape, requests: int, floor: Shape | None = None) -> Timing:
    """Warm up, then time up to `requests` requests (fewer if the shape is slow), each
    followed by a timed request of the `floor` shape, if given."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + WARMUP_BUDGET
    for n in range(WARMUP):
        answers.append(client.get(shape.paths[n % len(shape.paths)], shape.token)[2])
        if n >= 1 and time.monotonic() > deadline:
            break
    times: list[float] = []
    floors: list[float] = []
    errors = 0
    deadline = time.monotonic() + SHAPE_BUDGET
    while len(times) < requests and (len(times) < FEWEST or time.monotonic() < deadline):
        seconds, status, answer = client.get(
            shape.paths[len(times) % len(shape.paths)], shape.token
        )
        times.append(seconds * 1000)
        errors += status != 200
        answers.append(answer)
        if floor is not None:
            path = floor.paths[len(floors) % len(floor.paths)]
            floors.append(client.get(path, floor.token)[0] * 1000)
    p95 = statistics.quantiles(times, n=20)[-1]
    counts = [a["count"] for a in answers if "count" in a]
    count = counts[-1] if counts and shape.kind != "floor" else None
    p50 = statistics.median(times)
    floor_ms = statistics.median(floors) if floors else p50
    return Timing(shape.name, shape.kind, len(times), p50, p95, count, errors, floor_ms)


def list_path(**params: str) -> str:
    """A list URL with these query parameters."""
    return f"{API}/?{urlencode(params)}" if params else f"{API}/"


def deep_cursor_path(client: Client, token: str, depth: int) -> tuple[str, float]:
    """Follow `next` links (100 per page) to `depth`; the link there, for a page of the
    default size, and the mean seconds per page of the walk."""
    path, walked, started = list_path(limit="100"), 0, time.perf_counter()
    while walked < depth:
        _, status, answer = client.get(path, token)
        if status != 200:
            raise BenchError(f"GET {path} answered {status} during the cursor walk")
        if not answer["next"]:
            raise BenchError(f"the list ended after {walked} records, before {depth}")
        walked += len(answer["results"])
        path = relative(answer["next"], limit=None)
    pages = depth // 100
    return path, (time.perf_counter() - started) / max(1, pages)


def relative(link: str, **replace: str | None) -> str:
    """An absolute link as a path and query, with some parameters replaced (None: dropped)."""
    parts = urlsplit(link)
    params = [(k, v) for k, v in parse_qsl(parts.query) if k not in replace]
    params += [(k, v) for k, v in replace.items() if v is not None]
    return f"{parts.path}?{urlencode(params)}"


# ---------------------------------------------------------------- the shapes


@dataclass
class Tokens:
    """Bearer tokens of the callers."""

    admin: str
    grantee: str
    plain: str


def mint_tokens(secret: str, population: Population) -> Tokens:
    """An admin, the 5-grant user and the plain user."""

    def mint(sub: str, **claims: Any) -> str:
        payload = {"sub": sub, "exp": int(time.time()) + 24 * 3600, **claims}
        return jwt.encode(payload, secret, algorithm="HS256")

    return Tokens(
        admin=mint(str(uuid.uuid4()), roles=["admin"]),
        grantee=mint(population.grantee, entities=population.grants),
        plain=mint(population.plain),
    )


def shapes(population: Population, tokens: Tokens, depth: int) -> list[Shape]:
    """Every shape but the deep cursor page (which needs a walk first)."""
    granted_type, granted_id = population.grants[1].split(":")
    entity = {"entity_type": granted_type, "entity_id": granted_id}
    floor = [f"{API}/{media_id}/" for media_id in population.sample_ids]
    return [
        Shape("GET {id}/ (floor)", "floor", tokens.admin, floor),
        Shape("one entity (granted)", "list", tokens.grantee, [list_path(**entity)]),
        Shape(
            "own user entity (plain)",
            "list",
            tokens.plain,
            [list_path(entity_type="user", entity_id=population.plain)],
        ),
        Shape("no filter, 5 grants", "list", tokens.grantee, [list_path()]),
        Shape("no filter, plain user", "list", tokens.plain, [list_path()]),
        Shape("admin page 1", "list", tokens.admin, [list_path()]),
        Shape("admin media_type=video", "list", tokens.admin, [list_path(media_type="video")]),
        Shape(f"admin offset={depth}", "list", tokens.admin, [list_path(offset=str(depth))]),
        Shape("search in entity", "search", tokens.grantee, [list_path(**entity, search=HIT_WORD)]),
        Shape("search, 5 grants", "search", tokens.grantee, [list_path(search=HIT_WORD)]),
        Shape("search, plain user", "search", tokens.plain, [list_path(search=HIT_WORD)]),
        Shape("search miss, 5 grants", "search", tokens.grantee, [list_path(search=MISS_WORD)]),
        Shape("search miss, plain user", "search", tokens.plain, [list_path(search=MISS_WORD)]),
    ]


def run_shapes(
    client: Client, population: Population, tokens: Tokens, args: argparse.Namespace
) -> Results:
    """Time every shape, the deep cursor page among them, and judge them against the floor."""
    results = Results(records=args.records, depth=args.depth)
    floor, *listed = shapes(population, tokens, args.depth)
    progress(f"  {floor.name}")
    results.timings.append(measure(client, floor, args.requests))
    for shape in listed:
        progress(f"  {shape.name}")
        results.timings.append(measure(client, shape, args.requests, floor))
    progress(f"  following next links to depth {args.depth:,}")
    deep, results.walk_ms_per_page = deep_cursor_path(client, tokens.admin, args.depth)
    results.walk_ms_per_page *= 1000
    deep_shape = Shape(f"admin cursor at {args.depth}", "list", tokens.admin, [deep])
    results.timings.append(measure(client, deep_shape, args.requests, floor))
    results.judge()
    return results


# ---------------------------------------------------------------- results


@dataclass
class Results:
    """Everything the report prints."""

    records: int
    depth: int
    seeding: Seeding | None = None
    database_bytes: int = 0
    walk_ms_per_page: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute, before and after the timing
    timings: list[Timing] = field(default_factory=list)

    @property
    def floor_ms(self) -> float:
        """The p50 of `GET {id}/`."""
        return next(t.p50_ms for t in self.timings if t.kind == "floor")

    @property
    def list_target_ms(self) -> float:
        """10 ms, or 3 x the floor when the floor is above 3 ms (the floor timed alone)."""
        return list_target(self.floor_ms)

    def judge(self) -> None:
        """Set each shape's target (against the floor interleaved with it) and verdict."""
        for timing in self.timings:
            if timing.kind == "floor":
                continue
            list_ms = list_target(timing.floor_ms)
            timing.target_ms = SEARCH_TARGET_MS if timing.kind == "search" else list_ms
            timing.ok = timing.p50_ms <= timing.target_ms and not timing.errors

    def as_json(self) -> dict[str, Any]:
        """The figures, for `--json`."""
        seeding = asdict(self.seeding) if self.seeding else {}
        rate = self.seeding.rate if self.seeding else None
        return {**asdict(self), "seeding": {**seeding, "rate": rate}, "floor_ms": self.floor_ms}


def list_target(floor_ms: float) -> float:
    """10 ms, or 3 x the floor when the floor is above 3 ms."""
    return FLOOR_FACTOR * floor_ms if floor_ms > FLOOR_ALLOWANCE_MS else LIST_TARGET_MS


def report(results: Results) -> str:
    """The human-readable report."""
    seeding = results.seeding
    seeded = (
        f"seeding: {seeding.rate:,.0f} records/s through insert_many ({seeding.seconds:.1f} s; "
        f"{seeding.wall_seconds:.1f} s with building the records)"
        if seeding
        else "seeding: none, the records of an earlier run were reused (--data-dir)"
    )
    lines = [
        f"list benchmark: {results.records:,} records",
        seeded,
        f"database files: {results.database_bytes / 2**20:,.1f} MiB "
        f"({results.database_bytes / results.records:,.0f} bytes per record)",
        f"cursor walk to {results.depth:,}: {results.walk_ms_per_page:.1f} ms per page of 100",
        f"load average (1 min, {os.cpu_count()} cores): {results.load_average[0]:.1f} before "
        f"the timing, {results.load_average[1]:.1f} after",
        f"floor (GET {{id}}/ p50, timed alone): {results.floor_ms:.2f} ms; list target "
        f"{results.list_target_ms:.1f} ms, search target {SEARCH_TARGET_MS:.0f} ms "
        "(each list shape is judged against the floor interleaved with it: column floor)",
    ]
    if results.records > TARGETED_UNTIL:
        lines.append(f"(targets are set up to {TARGETED_UNTIL:,} records: verdicts for reference)")
    lines.append(
        f"{'shape':<28} {'p50 ms':>8} {'p95 ms':>8} {'count':>9} {'n':>4} {'errors':>6} "
        f"{'floor':>6} {'target':>8}  verdict"
    )
    for t in results.timings:
        count = f"{t.count:,}" if t.count is not None else "-"
        target = f"{t.target_ms:.1f} ms" if t.kind != "floor" else "-"
        mark = verdict(t.ok) if t.kind != "floor" else "-"
        lines.append(
            f"{t.name:<28} {t.p50_ms:>8.2f} {t.p95_ms:>8.2f} {count:>9} {t.requests:>4} "
            f"{t.errors:>6} {t.floor_ms:>6.2f} {target:>8}  {mark}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- the benchmark


def benchmark(workdir: Path, args: argparse.Namespace) -> Results:
    """Start the service, seed it through the repository, time every shape over HTTP."""
    rng = random.Random(args.seed)
    population = plan_population(args.records, rng)
    secret = secrets.token_urlsafe(36)
    data_dir = args.data_dir or workdir / "svc"
    port, log_path = free_port(), workdir / "service.log"
    try:
        env = service_env(secret, SERVICE_SETTINGS)
        with running(service_command(data_dir, port), log_path, env) as service:
            progress("starting the service")
            wait_until_answers(service, port, f"{API}/", 401, log_path)
            seeding = asyncio.run(seed(data_dir, population, rng))
            tokens = mint_tokens(secret, population)
            client = Client(port)
            load_before = os.getloadavg()[0]
            try:
                progress("timing the shapes")
                results = run_shapes(client, population, tokens, args)
            finally:
                client.close()
            results.load_average = (load_before, os.getloadavg()[0])
            results.seeding = seeding
            results.database_bytes = database_bytes(data_dir)
    finally:
        tail = log_tail(log_path)
        if tail:
            progress(f"the service logged (last {LOG_TAIL_LINES} lines):\n{tail}")
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="records (50000)")
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="timed requests per shape (100)"
    )
    parser.add_argument(
        "--depth", type=int, default=DEFAULT_DEPTH, help="deep page position (40000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated records (1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder (/tmp)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the service's data folder, kept: seeded on the first run, reused by the next ones "
        "with the same --records and --seed (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    if args.records < 2000 or args.requests < 10:
        parser.error("--records must be at least 2000 and --requests at least 10")
    args.depth = max(100, min(args.depth, args.records - 1000) // 100 * 100)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    args = parse_args(argv)
    return run_bench(
        "list",
        args.workdir,
        lambda tmp: benchmark(tmp, args),
        lambda results: json.dumps(results.as_json(), indent=2) if args.json else report(results),
    )


if __name__ == "__main__":
    sys.exit(main())
