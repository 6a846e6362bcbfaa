"""The embedded MongoDB-wire-protocol server (nx-27017) as a child process on loopback.

It lets a zero-setup install and the test suite run the same pymongo driver code that
talks to a real MongoDB replica set in production.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from mediasvc.settings import Settings

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def free_loopback_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM when our process dies,
    # even by SIGKILL, so the database is never left orphaned.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedMongo:
    """Starts nx-27017, waits until it answers a ping, and stops it."""

    def __init__(self, data_dir: Path, *, in_memory: bool, start_timeout: float) -> None:
        self.data_dir = data_dir
        self.in_memory = in_memory
        self.start_timeout = start_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The connection URI of the running server."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def command(self, port: int) -> list[str]:
        """The argument list that starts the server on `port`."""
        db_dir = self.data_dir / "db"
        db_dir.mkdir(parents=True, exist_ok=True)
        return [
            sys.executable,
            "-c",
            "import sys; from nx_27017.nx_27017 import main; sys.exit(main())",
            "--data-dir",
            "memory" if self.in_memory else str(db_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-file",
            str(db_dir / "nx-27017.log"),
            "--pid-file",
            str(db_dir / "nx-27017.pid"),
        ]

    async def start(self) -> str:
        """Start the server on a free port and return its URI once it answers."""
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_loopback_port()
            self._process = subprocess.Popen(
                self.command(self.port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            if await self._wait_until_ready():
                log.info("embedded database listening on 127.0.0.1:%d", self.port)
                return self.uri
            self.stop()
        raise RuntimeError("the embedded database did not start; see <data_dir>/db/nx-27017.log")

    async def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    return False
                try:
                    await client.admin.command("ping")
                    return True
                except PyMongoError:
                    await asyncio.sleep(0.05)
            return False
        finally:
            await client.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and reap it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pid_file = self.data_dir / "db" / "nx-27017.pid"
        if pid_file.exists():
            os.unlink(pid_file)


def run_database(settings: Settings) -> int:
    """Run the embedded server in the foreground on `embedded_db_port` (for supervisord).

    The servers then reach it with ``mongodb_uri = mongodb://127.0.0.1:<port>/``.
    """
    database = EmbeddedMongo(
        settings.data_path,
        in_memory=settings.embedded_db_in_memory,
        start_timeout=settings.embedded_db_start_timeout,
    )
    command = database.command(settings.embedded_db_port)
    os.execv(command[0], command)  # replaces this process: supervisord signals it directly
    return 0  # not reached
