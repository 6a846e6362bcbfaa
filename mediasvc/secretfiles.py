"""Secrets generated once under the data folder, so a zero-setup install is still signed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_secret(path: Path) -> str:
    """Read the secret at `path`, creating it (mode 0600) if it does not exist yet.

    Creation uses O_EXCL, so several processes starting together agree on one secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_complete(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
        handle.flush()
        os.fsync(handle.fileno())
    return path.read_text().strip()


def _read_when_complete(path: Path) -> str:
    # Another process may have created the file an instant ago and not written it yet.
    for _ in range(200):
        value = path.read_text().strip()
        if value:
            return value
        os.sched_yield()
    raise RuntimeError(f"secret file {path} is empty")


def resolve_secrets(
    settings_jwt_secret: str, settings_url_secret: str, secrets_dir: Path
) -> tuple[str, str]:
    """The JWT and URL-signing secrets: configured values, else the generated files."""
    jwt_secret = settings_jwt_secret or load_or_create_secret(secrets_dir / "jwt_secret")
    url_secret = settings_url_secret or load_or_create_secret(secrets_dir / "url_signing_secret")
    return jwt_secret, url_secret
