"""What a person (or a script) sees of a run: live progress bars per file and in total on
stderr, then a summary table on stdout; or, with `--json`, one JSON object a line and
nothing else on stdout."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from mediasvc.uploader.sources import Skipped, Source
from mediasvc.uploader.transfer import Outcome

STATUS_STYLES = {"ready": "green", "processing": "cyan", "pending": "cyan", "skipped": "yellow"}


class Silent:
    """No live display: `--json`, or stderr is not a terminal."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def begin(self, source: Source) -> None:
        """A file starts."""

    def sent(self, source: Source, count: int) -> None:
        """`count` more bytes of the file went out."""

    def moved(self, source: Source, offset: int) -> None:
        """The server has the file up to `offset` (it may be less than what was sent)."""

    def retrying(self, source: Source, reason: str, seconds: float) -> None:
        """Something failed for a passing reason; the next try is in `seconds`."""

    def finished(self, source: Source, outcome: Outcome) -> None:
        """The file is done, one way or another."""

    def settled(self, outcome: Outcome) -> None:
        """Its media is processed (`--wait`)."""


class Live(Silent):
    """Rich progress bars on stderr: one per file on its way, and the total."""

    def __init__(self, console: Console, total_bytes: int, files: int) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.total_bytes = total_bytes
        self.total = self.bars.add_task(f"total ({files} files)", total=total_bytes)
        self._tasks: dict[str, TaskID] = {}
        self._done: dict[str, int] = {}  # bytes of each file counted in the total
        self._lock = threading.Lock()

    def __enter__(self) -> Live:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def begin(self, source: Source) -> None:
        with self._lock:
            self._tasks[source.shown] = self.bars.add_task(source.shown, total=source.size)
            self._done.setdefault(source.shown, 0)

    def sent(self, source: Source, count: int) -> None:
        self._count(source, count, absolute=False)

    def moved(self, source: Source, offset: int) -> None:
        self._count(source, offset, absolute=True)

    def _count(self, source: Source, value: int, *, absolute: bool) -> None:
        with self._lock:
            task = self._tasks.get(source.shown)
            if task is None:
                return
            before = self._done[source.shown]
            at = value if absolute else before + value
            self._done[source.shown] = at
            self.bars.update(task, completed=at)
            self.bars.update(self.total, advance=at - before)

    def retrying(self, source: Source, reason: str, seconds: float) -> None:
        self.console.print(
            Text(f"{source.shown}: {reason}; trying again in {seconds:.1f} s", style="yellow")
        )

    def finished(self, source: Source, outcome: Outcome) -> None:
        with self._lock:
            task = self._tasks.pop(source.shown, None)
            if task is not None:
                self.bars.remove_task(task)
            missing = source.size - self._done.get(source.shown, 0)
            if (outcome.failed or outcome.earlier) and missing:  # only what still goes
                self.total_bytes -= missing
                self.bars.update(self.total, total=self.total_bytes)
        self.console.print(_line(outcome))

    def settled(self, outcome: Outcome) -> None:
        self.console.print(_line(outcome))


def _line(outcome: Outcome) -> Text:
    mark, style = ("✗", "red") if outcome.failed else ("✓", STATUS_STYLES.get(outcome.status, ""))
    text = Text(f"{mark} {outcome.shown}", style=style)
    if outcome.media_id:
        text.append(f"  {outcome.media_id}", style="dim")
    text.append(f"  {outcome.status}")
    if outcome.error:
        text.append(f": {outcome.error}")
    return text


def skipped_outcomes(skipped: Iterable[Skipped]) -> list[Outcome]:
    """The files left out, as outcomes (named files that cannot go are failures)."""
    return [
        Outcome(s.shown, s.size, "failed" if s.failed else "skipped", error=s.reason)
        for s in skipped
    ]


def summary_table(outcomes: list[Outcome]) -> Table:
    """File, media id, status, size, time: one row a file."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("file", overflow="fold")
    table.add_column("media id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    for outcome in outcomes:
        style = "red" if outcome.failed else STATUS_STYLES.get(outcome.status, "")
        table.add_row(
            outcome.shown,
            outcome.media_id or "-",
            Text(outcome.status + ("*" if outcome.error else ""), style=style),
            size_text(outcome.size) if outcome.size else "-",
            f"{outcome.seconds:.1f} s" if outcome.seconds else "-",
        )
    return table


def notes(outcomes: list[Outcome]) -> list[Text]:
    """Below the table, the why of each starred status and where uploads were resumed (on
    lines of their own: the reasons are long, the table stays narrow)."""
    lines = []
    for outcome in outcomes:
        if outcome.error:
            style = "red" if outcome.failed else "yellow"
            lines.append(Text(f"* {outcome.shown}: {outcome.error}", style=style))
        elif outcome.earlier:
            lines.append(Text(f"  {outcome.shown}: stored by an earlier run, not sent again"))
        elif outcome.resumed_at:
            lines.append(Text(f"  {outcome.shown}: resumed at {size_text(outcome.resumed_at)}"))
    return lines


def totals_line(outcomes: list[Outcome]) -> str:
    """`3 uploaded, 1 failed, 2 skipped` (and `4 stored earlier` when a re-run found some)."""
    failed = sum(o.failed for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    earlier = sum(o.earlier and not o.failed for o in outcomes)
    uploaded = len(outcomes) - failed - skipped - earlier
    stored = f", {earlier} stored earlier" if earlier else ""
    return f"{uploaded} uploaded{stored}, {failed} failed, {skipped} skipped"


def json_lines(outcomes: Iterable[Outcome]) -> str:
    """One JSON object a file, one a line."""
    return "".join(json.dumps(outcome.as_json()) + "\n" for outcome in outcomes)


def size_text(size: int) -> str:
    """Bytes in binary units, as the service's settings count them (1 MB = 2**20 bytes)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
