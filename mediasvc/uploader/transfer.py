"""One file's upload from start to end, and a run of them on a pool of threads.

A file resumes the upload the state remembers (HEAD says how far it got) or creates one;
then its chunks go up one after the other. A chunk that fails for a passing reason (a
dropped connection, 429, 503, a lock held by the request a dead client left behind) is
retried after a backoff, from the offset HEAD reports then: what the server acknowledged is
never sent twice. A final refusal ends the file with the server's message.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from mediasvc.uploader.http import Connections, FileRegion, Stopped
from mediasvc.uploader.retry import Backoff, GaveUp, Retrier
from mediasvc.uploader.sources import Source
from mediasvc.uploader.state import Remembered, ResumeState, key_of
from mediasvc.uploader.tus import (
    ChunkDigests,
    Gone,
    Refused,
    Retryable,
    TusClient,
    media_id_of,
)

SETTLED = frozenset({"ready", "failed"})
FIRST_POLL = 0.5
LONGEST_POLL = 5.0


@dataclass(frozen=True)
class Plan:
    """What every file of one run shares."""

    server: str
    token: str
    entity_type: str
    entity_id: str
    chunk_size: int
    checksum: str | None
    timeout: float
    backoff: Backoff
    fields: dict[str, str] = field(default_factory=dict)  # title, description, alt_text
    again: bool = False  # send files the state says are stored already

    @property
    def entity(self) -> str:
        return f"{self.entity_type}:{self.entity_id}"


@dataclass
class Outcome:
    """How one file went: the media's status once known, else failed/skipped/interrupted."""

    shown: str
    size: int
    status: str = "failed"
    media_id: str | None = None
    seconds: float = 0.0
    error: str | None = None
    resumed_at: int = 0
    retries: int = 0
    earlier: bool = False  # stored by an earlier run: nothing was sent

    @property
    def failed(self) -> bool:
        """Whether this file makes the run fail (skipped files do not)."""
        return self.status != "skipped" and (self.error is not None or self.status == "failed")

    def as_json(self) -> dict[str, Any]:
        """One line of `--json`."""
        return {
            "path": self.shown,
            "media_id": self.media_id,
            "status": self.status,
            "size": self.size,
            "seconds": round(self.seconds, 3),
            "resumed_at": self.resumed_at,
            "retries": self.retries,
            "uploaded_earlier": self.earlier,
            "error": self.error,
        }


class Progress(Protocol):
    """What a run tells whoever shows its progress (it is called from worker threads)."""

    def begin(self, source: Source) -> None: ...
    def sent(self, source: Source, count: int) -> None: ...
    def moved(self, source: Source, offset: int) -> None: ...
    def retrying(self, source: Source, reason: str, seconds: float) -> None: ...
    def finished(self, source: Source, outcome: Outcome) -> None: ...


class Transfer:
    """Uploads the files of one run; each worker thread has connections of its own."""

    def __init__(
        self, plan: Plan, state: ResumeState, progress: Progress, stop: threading.Event
    ) -> None:
        self.plan = plan
        self.state = state
        self.progress = progress
        self.stop = stop
        self.abort_reason: str | None = None  # the token was refused: no file can go
        self._local = threading.local()
        self._all: list[Connections] = []
        self._lock = threading.Lock()

    def client(self) -> TusClient:
        """This thread's client (made on first use)."""
        client: TusClient | None = getattr(self._local, "client", None)
        if client is None:
            connections = Connections(self.plan.timeout, self.stop)
            with self._lock:
                self._all.append(connections)
            plan = self.plan
            client = TusClient(plan.server, plan.token, connections, plan.checksum)
            self._local.client = client
        return client

    def close(self) -> None:
        """Close the connections of every thread."""
        for connections in self._all:
            connections.close()

    def upload(self, source: Source) -> Outcome:
        """One file, resumed or new; never raises (the outcome says what happened)."""
        outcome = Outcome(source.shown, source.size)
        if self.stop.is_set() or self.abort_reason:
            outcome.status = "interrupted" if self.stop.is_set() else "failed"
            outcome.error = self.abort_reason or "interrupted before it started"
            return outcome
        started = time.monotonic()
        retrier = Retrier(self.plan.backoff, self.stop, on_retry=self._notifier(source))
        self.progress.begin(source)
        try:
            self._upload(source, outcome, retrier)
        except Stopped:
            outcome.status, outcome.error = "interrupted", "interrupted: run again to continue"
        except GaveUp as exc:  # the state keeps the upload: a later run continues it
            outcome.status, outcome.error = "failed", str(exc)
        except Refused as exc:
            outcome.status, outcome.error = "failed", str(exc)
            if exc.status == 401:
                self.abort_reason = f"not started: the token was refused ({exc})"
        except OSError as exc:  # the file (or the state file) cannot be read or written
            outcome.status, outcome.error = "failed", f"{exc.strerror or exc}: {exc.filename}"
        except sqlite3.Error as exc:  # the state cannot be read or written
            outcome.status, outcome.error = "failed", f"the state file: {exc}"
        finally:
            outcome.seconds = time.monotonic() - started
            outcome.retries = retrier.retries
            self.progress.finished(source, outcome)
        return outcome

    def _notifier(self, source: Source) -> Callable[[str, float], None]:
        return lambda reason, seconds: self.progress.retrying(source, reason, seconds)

    def _upload(self, source: Source, outcome: Outcome, retrier: Retrier) -> None:
        key = key_of(self.plan.server, self.plan.entity, source)
        remembered = self.state.recall(key)
        if remembered.media_id and not self.plan.again:
            if self._stored_earlier(key, remembered.media_id, outcome, retrier):
                return
            remembered = Remembered()
        try:
            url, offset = self._resume_or_create(source, key, remembered.url, retrier)
            outcome.media_id, outcome.resumed_at = media_id_of(url), offset
            self.progress.moved(source, offset)
            self._send(source, url, offset, retrier)
        except Refused:
            self.state.forget(key)  # refused or gone for good: a re-run starts afresh
            raise
        self.state.finished(key, media_id_of(url))
        record = retrier.run(lambda: self.client().media(media_id_of(url)))
        _settle(outcome, record)

    def _stored_earlier(self, key: str, media_id: str, outcome: Outcome, retrier: Retrier) -> bool:
        """Whether an earlier run's media of this file still exists (then it is this file's
        outcome); a media deleted since is forgotten and the file is sent again."""
        try:
            record = retrier.run(lambda: self.client().media(media_id))
        except Refused as exc:
            if exc.status != 404:
                raise
            self.state.forget(key)
            return False
        outcome.media_id, outcome.earlier = media_id, True
        _settle(outcome, record)
        return True

    def _resume_or_create(
        self, source: Source, key: str, url: str | None, retrier: Retrier
    ) -> tuple[str, int]:
        """The remembered upload and the server's offset, or a new upload at 0."""
        client = self.client()
        if url is not None:
            try:
                return url, retrier.run(lambda: client.offset(url))
            except Gone:  # expired, or removed: start over
                self.state.forget(key)
        created = retrier.run(lambda: client.create(source.size, self._metadata(source)))
        self.state.remember(key, created.url, created.expires_at)
        return created.url, 0

    def _metadata(self, source: Source) -> dict[str, str]:
        plan = self.plan
        return {
            "filename": source.name,
            "entity_type": plan.entity_type,
            "entity_id": plan.entity_id,
            **plan.fields,
        }

    def _send(self, source: Source, url: str, offset: int, retrier: Retrier) -> None:
        """Every chunk from `offset` on; after a failure, go on from the server's offset."""
        client, failures = self.client(), 0
        with open(source.path, "rb") as file, ChunkDigests(file, self.plan.checksum) as digests:
            if _size_of(file) != source.size:
                raise Refused("the file changed since the upload began; run again")
            while offset < source.size:
                region = FileRegion(file, offset, self._length_at(source, offset))
                digest = digests.of(region.offset, region.length)
                after = region.offset + region.length
                digests.prepare(after, self._length_at(source, after))
                try:
                    offset = self._chunk(client, url, region, digest, source)
                    failures = 0
                except Retryable as problem:
                    failures += 1
                    retrier.pause(failures, problem)
                    offset = retrier.run(lambda: client.offset(url))
                self.progress.moved(source, offset)

    def _length_at(self, source: Source, offset: int) -> int:
        """The length of the chunk that starts at `offset` (0 past the end)."""
        return max(0, min(self.plan.chunk_size, source.size - offset))

    def _chunk(
        self, client: TusClient, url: str, region: FileRegion, digest: bytes | None, source: Source
    ) -> int:
        sent = self._sent_counter(source)
        new_offset = client.append(url, region, sent, digest)
        if new_offset <= region.offset:
            raise Retryable(f"the server's offset stayed at {new_offset}")
        return new_offset

    def _sent_counter(self, source: Source) -> Callable[[int], None]:
        return lambda count: self.progress.sent(source, count)


def _settle(outcome: Outcome, record: dict[str, Any]) -> None:
    """The outcome takes the media's status (and its reason, if processing failed)."""
    outcome.status = str(record.get("status"))
    if outcome.status == "failed":
        outcome.error = str(record.get("error") or "processing failed")


def _size_of(file: Any) -> int:
    return os.fstat(file.fileno()).st_size


def upload_all(
    transfer: Transfer, sources: list[Source], concurrency: int, stop: threading.Event
) -> list[Outcome]:
    """Every file, `concurrency` at a time, in the order given. Ctrl-C stops the run: files
    on their way end as interrupted (their uploads stay resumable), the rest do not start."""
    with ThreadPoolExecutor(concurrency, thread_name_prefix="upload") as pool:
        futures = [pool.submit(transfer.upload, source) for source in sources]
        try:
            return _results(futures, stop)
        finally:
            transfer.close()


def _results(futures: list[Future[Outcome]], stop: threading.Event) -> list[Outcome]:
    while True:
        try:
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            stop.set()  # the workers notice within one piece or one backoff


def wait_for_processing(
    client: TusClient,
    outcomes: list[Outcome],
    timeout: float,
    stop: threading.Event,
    settled: Callable[[Outcome], None],
) -> None:
    """Poll each uploaded media until it is ready or failed; past `timeout` seconds the ones
    still processing get an error (a run that was told to wait has then failed)."""
    waiting = [o for o in outcomes if o.media_id and not o.failed and o.status not in SETTLED]
    deadline, pause = time.monotonic() + timeout, FIRST_POLL
    while waiting:
        for outcome in list(waiting):
            if _poll(client, outcome):
                waiting.remove(outcome)
                settled(outcome)
        if not waiting or stop.wait(min(pause, max(0.0, deadline - time.monotonic()))):
            break
        if time.monotonic() >= deadline:
            break
        pause = min(LONGEST_POLL, pause * 1.5)
    for outcome in waiting:
        waited = "stopped waiting" if stop.is_set() else f"after waiting {timeout:g} s"
        outcome.error = f"still {outcome.status}: {waited}"


def _poll(client: TusClient, outcome: Outcome) -> bool:
    """Whether the media has settled (its outcome updated); a passing failure is a no."""
    assert outcome.media_id is not None
    try:
        record = client.media(outcome.media_id)
    except Retryable:
        return False
    except Refused as exc:
        outcome.status, outcome.error = "failed", str(exc)
        return True
    _settle(outcome, record)
    return outcome.status in SETTLED
