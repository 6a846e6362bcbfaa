"""The uploader's memory between runs, keyed by server, entity, absolute path, size and
modification time (a file that changed is a new file):

- a file begun and not finished has its upload URL: a re-run asks the server (HEAD) how far
  it got and goes on from there;
- a file finished has the id of its media: a re-run leaves it alone while that media exists,
  so running the same command again after an interruption sends only what is missing.

It is a small SQLite database (the standard library's), so that a run over tens of thousands
of files writes one row per change instead of rewriting a file, two runs at once wait for
each other's writes, and a run killed mid-write leaves it whole.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mediasvc.uploader.sources import Source

UNFINISHED_DAYS = 30  # an upload without an expiry of its own is dropped after this
FINISHED_DAYS = 365  # how long a finished file is remembered
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    key TEXT PRIMARY KEY,
    url TEXT,
    media_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL
)
"""


def default_path() -> Path:
    """`$XDG_STATE_HOME/mediasvc/uploads.db` (`~/.local/state/...` without it)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mediasvc" / "uploads.db"


def key_of(server: str, entity: str, source: Source) -> str:
    """What identifies one file's upload: the same file, to the same place, unchanged."""
    return f"{server.rstrip('/')} {entity} {source.path} {source.size} {source.mtime_ns}"


@dataclass(frozen=True)
class Remembered:
    """What the state knows of one file: an unfinished upload's URL or a finished media."""

    url: str | None = None
    media_id: str | None = None


class ResumeState:
    """The state file, shared by the worker threads of one run (one connection, a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def recall(self, key: str) -> Remembered:
        """What is remembered of a file (nothing: a `Remembered` of Nones)."""
        with self._connected() as db:
            row = db.execute("SELECT url, media_id FROM uploads WHERE key = ?", (key,)).fetchone()
        return Remembered(*row) if row else Remembered()

    def remember(self, key: str, url: str, expires_at: float | None) -> None:
        """Note a new upload (before its first byte is sent)."""
        self._put(key, url, None, expires_at)

    def finished(self, key: str, media_id: str) -> None:
        """The file is stored as this media: a re-run need not send it again."""
        self._put(key, None, media_id, time.time() + FINISHED_DAYS * 86400)

    def forget(self, key: str) -> None:
        """Nothing to resume or keep (refused, expired, or its media is gone)."""
        with self._connected() as db:
            db.execute("DELETE FROM uploads WHERE key = ?", (key,))

    def unfinished(self) -> list[str]:
        """The upload URLs of files begun and not finished."""
        with self._connected() as db:
            rows = db.execute("SELECT url FROM uploads WHERE url IS NOT NULL").fetchall()
        return [url for (url,) in rows]

    def close(self) -> None:
        """Close the database (a later call opens it again)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _put(self, key: str, url: str | None, media_id: str | None, expires: float | None) -> None:
        now = time.time()
        with self._connected() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?)",
                (key, url, media_id, now, expires or now + UNFINISHED_DAYS * 86400),
            )

    @contextlib.contextmanager
    def _connected(self) -> Iterator[sqlite3.Connection]:
        """The open database, in a transaction, one thread at a time."""
        with self._lock:
            if self._db is None:
                self._db = self._open()
            with self._db:
                yield self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        with db:
            db.execute(_SCHEMA)
            db.execute("DELETE FROM uploads WHERE expires_at < ?", (time.time(),))
        return db
