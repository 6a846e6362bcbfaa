"""A service under test: its settings, the client that reaches it, and the files it leaves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediasvc.app import Service
from mediasvc.settings import Settings
from tests.support.client import Client
from tests.support.tokens import TEST_SECRET


def service_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of a service under test: a free loopback port, the database in memory."""
    defaults: dict[str, Any] = {
        "data_dir": str(data_dir),
        "port": 0,
        "embedded_db_in_memory": True,
        "jwt_secret": TEST_SECRET,
        "log_level": "warning",
        "dispatcher_poll_interval": 0.2,
        "shutdown_timeout": 2,
        # Endpoints that tests (schemathesis among them) register with made-up hosts are never
        # sent to: no test reaches beyond loopback. tests/test_webhooks.py turns this on.
        "webhook_send_enabled": False,
    }
    return Settings(**{**defaults, **changes})


def spool_files(settings: Settings) -> list[Path]:
    """Spool files left behind (there must be none after any request has ended)."""
    return list(settings.spool_path.glob("upload-*"))


def stored_files(settings: Settings) -> set[Path]:
    """Every file in the local blob store."""
    return {p for p in settings.storage_path.rglob("*") if p.is_file()}


@dataclass
class Backend:
    """One running service and what a test needs to look behind it."""

    name: str
    service: Service
    client: Client

    @property
    def settings(self) -> Settings:
        return self.service.context.settings
