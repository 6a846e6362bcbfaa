"""`mediasvc upload PATH... --entity TYPE:ID`: the command line, checked, then the run."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mediasvc.settings import Settings, parse_size
from mediasvc.uploader.http import Connections, Stopped
from mediasvc.uploader.options import TOKEN_VARIABLE
from mediasvc.uploader.report import (
    Live,
    Silent,
    json_lines,
    notes,
    skipped_outcomes,
    summary_table,
    totals_line,
)
from mediasvc.uploader.retry import Backoff, GaveUp, Retrier
from mediasvc.uploader.sources import Collection, collect
from mediasvc.uploader.state import ResumeState, default_path
from mediasvc.uploader.transfer import Outcome, Plan, Transfer, upload_all, wait_for_processing
from mediasvc.uploader.tus import Refused, TusClient

SMALLEST_CHUNK = 64 * 1024
LOG_WIDTH = 160
DISCOVERY_RETRIES = 3  # a mistyped --server should say so within seconds, not minutes
SINGLE_FILE_FIELDS = ("title", "description", "alt_text")
_ENTITY = re.compile(r"[^:\s]+:[^:\s*]+")
_SERVER = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)?")


class UsageError(Exception):
    """The command line cannot be run as it is (exit status 2)."""


@dataclass(frozen=True)
class Run:
    """A checked command line."""

    plan: Plan
    collection: Collection
    state: ResumeState
    concurrency: int
    wait: float | None
    as_json: bool


def run(settings: Settings, args: argparse.Namespace) -> int:
    """The command: 0 when every file went, 1 when one failed, 2 for a bad command line,
    130 when interrupted."""
    try:
        checked = _checked(settings, args)
    except UsageError as exc:
        print(f"mediasvc upload: {exc}", file=sys.stderr)
        return 2
    try:
        return _upload(checked)
    except KeyboardInterrupt:
        print("mediasvc upload: interrupted; run it again to continue", file=sys.stderr)
        return 130
    finally:
        checked.state.close()


def _checked(settings: Settings, args: argparse.Namespace) -> Run:
    plan = _plan(settings, args)
    if args.concurrency < 1 or args.retries < 0 or args.timeout <= 0 or args.wait_timeout <= 0:
        raise UsageError(
            "--concurrency must be at least 1, --retries not negative, timeouts positive"
        )
    collection = collect(args.paths, args.include)
    named = len(collection.sources) + len(collection.skipped)
    if plan.fields and named > 1:
        names = ", ".join(f"--{name.replace('_', '-')}" for name in plan.fields)
        raise UsageError(f"{names}: for one file only; the paths name {named}")
    state = ResumeState(Path(os.path.abspath(args.state)) if args.state else default_path())
    wait = args.wait_timeout if args.wait else None
    return Run(plan, collection, state, args.concurrency, wait, args.json)


def _plan(settings: Settings, args: argparse.Namespace) -> Plan:
    if not _ENTITY.fullmatch(args.entity):
        raise UsageError(f"--entity {args.entity!r} is not TYPE:ID")
    token = args.token or os.environ.get(TOKEN_VARIABLE, "")
    if not token.strip():
        raise UsageError(f"give --token or set {TOKEN_VARIABLE} (`mediasvc token` prints one)")
    server = (args.server or default_server(settings)).rstrip("/")
    if not _SERVER.fullmatch(server):
        raise UsageError(f"--server {server!r} is not an http(s) URL")
    try:
        chunk_size = parse_size(args.chunk_size)
    except ValueError as exc:
        raise UsageError(f"--chunk-size: {exc}") from None
    if chunk_size < SMALLEST_CHUNK:
        raise UsageError(f"--chunk-size must be at least {SMALLEST_CHUNK // 1024} KiB")
    entity_type, entity_id = args.entity.split(":", 1)
    fields = {name: getattr(args, name) for name in SINGLE_FILE_FIELDS if getattr(args, name)}
    return Plan(
        server=server, token=token.strip(), entity_type=entity_type, entity_id=entity_id,
        chunk_size=chunk_size, checksum=None if args.checksum == "none" else args.checksum,
        timeout=args.timeout, backoff=Backoff(attempts=args.retries), fields=fields,
        again=args.again,
    )  # fmt: skip


def default_server(settings: Settings) -> str:
    """The configured public URL, else where `mediasvc serve` with these settings listens."""
    if settings.public_url:
        return settings.public_url
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def _upload(run: Run) -> int:
    stderr = Console(stderr=True)
    left_out = skipped_outcomes(run.collection.skipped)
    if not run.collection.sources:
        _print(run, left_out)
        print("mediasvc upload: nothing to upload", file=sys.stderr)
        return 1
    stop = threading.Event()
    try:
        plan = _discovered(run.plan, stop)
    except (Refused, GaveUp, Stopped) as exc:
        print(f"mediasvc upload: {exc}", file=sys.stderr)
        return 1
    live = not run.as_json and stderr.is_terminal
    sources = run.collection.sources
    total = sum(source.size for source in sources)
    with Live(stderr, total, len(sources)) if live else Silent() as progress:
        transfer = Transfer(plan, run.state, progress, stop)
        outcomes = upload_all(transfer, sources, run.concurrency, stop)
        if run.wait is not None and not stop.is_set():
            _wait(plan, outcomes, run.wait, stop, progress)
    _print(run, outcomes + left_out)
    return _status(outcomes + left_out, stop)


def _discovered(plan: Plan, stop: threading.Event) -> Plan:
    """The plan, checked against the server's OPTIONS (a tus server, with our checksum)."""
    connections = Connections(plan.timeout, stop)
    brief = dataclasses.replace(
        plan.backoff, attempts=min(plan.backoff.attempts, DISCOVERY_RETRIES)
    )
    try:
        client = TusClient(plan.server, plan.token, connections, None)
        found = Retrier(brief, stop).run(client.discover)
    finally:
        connections.close()
    if plan.checksum is None or plan.checksum in found.checksums:
        return plan
    if "checksum" not in found.extensions:
        print("mediasvc upload: the server checks no checksums; sending none", file=sys.stderr)
        return dataclasses.replace(plan, checksum=None)
    offered = ", ".join(sorted(found.checksums))
    raise Refused(f"the server does not take {plan.checksum} checksums (it takes {offered})")


def _wait(
    plan: Plan, outcomes: list[Outcome], timeout: float, stop: threading.Event, progress: Silent
) -> None:
    connections = Connections(plan.timeout, stop)
    client = TusClient(plan.server, plan.token, connections, None)
    try:
        wait_for_processing(client, outcomes, timeout, stop, progress.settled)
    except KeyboardInterrupt:
        stop.set()
    finally:
        connections.close()


def _print(run: Run, outcomes: list[Outcome]) -> None:
    if run.as_json:
        sys.stdout.write(json_lines(outcomes))
        sys.stdout.flush()
        return
    console = Console()
    if not console.is_terminal:  # a log or a pipe: no terminal width to fit
        console = Console(width=LOG_WIDTH)
    console.print(summary_table(outcomes))
    for line in notes(outcomes):
        console.print(line)
    console.print(totals_line(outcomes))


def _status(outcomes: list[Outcome], stop: threading.Event) -> int:
    if stop.is_set():
        return 130
    return 1 if any(o.failed for o in outcomes) else 0
