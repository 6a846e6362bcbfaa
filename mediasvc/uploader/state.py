"""The uploader's memory between runs: the upload URL of every file it has begun and not
finished, keyed by server, entity, absolute path, size and modification time (a file that
changed starts over). A re-run asks the server (HEAD) how far each upload got and goes on
from there. Entries go when their file is done or refused, or when their upload expired.

The file is small JSON, rewritten whole (temporary file, then rename) under a lock file, so
two runs at once and a run killed mid-write leave it readable.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mediasvc.uploader.sources import Source

FORMAT = 1
STALE_SECONDS = 30 * 86400  # entries with no expiry of their own are dropped after this


def default_path() -> Path:
    """`$XDG_STATE_HOME/mediasvc/uploads.json` (`~/.local/state/...` without it)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mediasvc" / "uploads.json"


def key_of(server: str, entity: str, source: Source) -> str:
    """What identifies one file's upload: the same file, to the same place, unchanged."""
    return f"{server.rstrip('/')} {entity} {source.path} {source.size} {source.mtime_ns}"


class ResumeState:
    """Upload URLs of unfinished files, shared by the worker threads of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def url(self, key: str) -> str | None:
        """The upload URL remembered for a file, if any."""
        entry = self._read().get(key)
        return str(entry["url"]) if isinstance(entry, dict) and "url" in entry else None

    def remember(self, key: str, url: str, expires_at: float | None) -> None:
        """Note a new upload (before its first byte is sent)."""
        entry = {"url": url, "created_at": time.time(), "expires_at": expires_at}
        with self._editing() as entries:
            entries[key] = entry

    def forget(self, key: str) -> None:
        """The file is done (or will never be): nothing to resume."""
        with self._editing() as entries:
            entries.pop(key, None)

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        uploads = document.get("uploads") if isinstance(document, dict) else None
        return uploads if isinstance(uploads, dict) else {}

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        """The entries, read under both locks and written back (stale ones dropped)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            self._write({key: e for key, e in entries.items() if not _stale(e)})

    def _write(self, entries: dict[str, Any]) -> None:
        document = json.dumps({"format": FORMAT, "uploads": entries}, indent=1)
        fd, temporary = tempfile.mkstemp(prefix=".uploads-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(document)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def _stale(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return True
    now = time.time()
    expires = entry.get("expires_at")
    if isinstance(expires, (int, float)):
        return bool(expires < now)
    created = entry.get("created_at")
    return not isinstance(created, (int, float)) or created < now - STALE_SECONDS
