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
from collections.abc import Awaitable, Callable
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


def _dies_with(parent: int) -> Callable[[], None]:
    """A pre-exec hook: the kernel kills the child when `parent` dies, even by SIGKILL, so
    the database is never left orphaned. SIGKILL, because nx-27017 can hang on SIGTERM
    while it shuts down (seen: an orphan that outlived its killed server); SQLite keeps
    committed data through a kill."""

    def hook() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above: no signal comes
            os._exit(1)

    return hook


class EmbeddedDatabaseError(RuntimeError):
    """The embedded database cannot be started (or reached); the message says what to do."""


def pid_file_of(data_dir: Path) -> Path:
    """Where nx-27017 writes its PID for this data folder."""
    return data_dir / "db" / "nx-27017.pid"


def port_file_of(data_dir: Path) -> Path:
    """Where the running embedded database of this data folder leaves its port."""
    return data_dir / "db" / "nx-27017.port"


def running_database_pid(data_dir: Path) -> int | None:
    """The PID of a live nx-27017 that uses this data folder's pid file, or None."""
    pid_file = pid_file_of(data_dir)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_database_of(pid, pid_file) else None


def running_database_uri(data_dir: Path) -> str | None:
    """The URI of the live embedded database of this data folder (a running server's), or
    None when there is none; EmbeddedDatabaseError when one runs but its port is unknown."""
    pid = running_database_pid(data_dir)
    if pid is None:
        return None
    try:
        port = int(port_file_of(data_dir).read_text().strip())
    except (OSError, ValueError):
        raise EmbeddedDatabaseError(
            f"the embedded database of {data_dir} runs (pid {pid}) but its port is unknown; "
            "set mongodb_uri to reach it"
        ) from None
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def clear_stale_pid_file(data_dir: Path) -> None:
    """Remove a pid file left by a killed database, whatever process its PID names now.

    nx-27017 refuses to start while its pid file names any live PID (`kill(pid, 0)`), which
    after a SIGKILL can be an unrelated process that got the PID, or the dead database still
    a zombie. Only a live nx-27017 using this very pid file counts as running.
    """
    pid_file = pid_file_of(data_dir)
    if not pid_file.exists():
        return
    pid = running_database_pid(data_dir)
    if pid is not None:
        raise EmbeddedDatabaseError(
            f"the embedded database of {data_dir} already runs (pid {pid}): another mediasvc "
            "uses this data folder; stop it, or give this one its own --data-dir or mongodb_uri"
        )
    log.warning("removing the stale %s", pid_file)
    pid_file.unlink(missing_ok=True)


def _is_database_of(pid: int, pid_file: Path) -> bool:
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs: trust the PID, as nx-27017 does
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False  # gone
    if state in ("Z", "X"):  # a zombie is dead; it only waits for its parent
        return False
    return any(b"nx_27017" in a for a in arguments) and str(pid_file).encode() in arguments


class EmbeddedMongo:
    """Starts nx-27017, waits until it answers a ping, restarts it if it dies, and stops it.

    A restart reuses the port, so the pymongo client of the process reconnects by itself.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        in_memory: bool,
        start_timeout: float,
        restart_delay: float = 0.5,
        restart_max_delay: float = 30.0,
        watch_interval: float = 0.2,
    ) -> None:
        self.data_dir = data_dir
        self.in_memory = in_memory
        self.start_timeout = start_timeout
        self.restart_delay = restart_delay
        self.restart_max_delay = restart_max_delay
        self.watch_interval = watch_interval
        self.port = 0
        self.state = "stopped"  # running, restarting, stopped
        self.restarts = 0  # successful restarts after a death
        self.failed_restarts = 0  # attempts that did not come up (each followed by a longer wait)
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        """The connection URI of the running server."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        """The PID of the database process, while there is one."""
        return self._process.pid if self._process is not None else None

    def command(self, port: int) -> list[str]:
        """The argument list that starts the server on `port`."""
        db_dir = self.data_dir / "db"
        db_dir.mkdir(parents=True, exist_ok=True)
        return [
            sys.executable,
            "-c",
            "import sys; from mediasvc.nx_27017_server import main; sys.exit(main())",
            "--data-dir",
            "memory" if self.in_memory else str(db_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-file",
            str(db_dir / "nx-27017.log"),
            "--pid-file",
            str(pid_file_of(self.data_dir)),
        ]

    async def start(self) -> str:
        """Start the server on a free port and return its URI once it answers."""
        clear_stale_pid_file(self.data_dir)
        for _ in range(3):  # a free port can be taken between the probe and the bind
            if await self._launch(free_loopback_port()):
                log.info("embedded database listening on 127.0.0.1:%d", self.port)
                _write_atomically(port_file_of(self.data_dir), f"{self.port}\n")
                self.state = "running"
                return self.uri
        raise EmbeddedDatabaseError(
            "the embedded database did not start; see <data_dir>/db/nx-27017.log"
        )

    async def _launch(self, port: int) -> bool:
        self.port = port
        self._process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_dies_with(os.getpid()) if sys.platform.startswith("linux") else None,
            # Its own process group: a Ctrl-C or a group signal meant for the server does not
            # take the database away while the server drains; it stops last, or with us.
            process_group=0,
        )
        if await self._wait_until_ready():
            return True
        self._terminate()
        return False

    def supervise(self, on_restart: Callable[[], Awaitable[None]]) -> None:
        """Watch the server and restart it (same port, with backoff) whenever it dies;
        `on_restart` runs after each restart (an in-memory database comes back empty)."""
        self._watcher = asyncio.create_task(self._watch(on_restart), name="embedded-db-watch")

    async def _watch(self, on_restart: Callable[[], Awaitable[None]]) -> None:
        delay = self.restart_delay
        started = time.monotonic()
        while True:
            await asyncio.sleep(self.watch_interval)
            process = self._process
            if process is not None and process.poll() is None:
                continue
            self.state = "restarting"
            log.error("the embedded database exited (%s); restarting it", _exit_of(process))
            if time.monotonic() - started > self.restart_max_delay:
                delay = self.restart_delay  # it had been up a while: not a crash loop
            while True:
                await asyncio.sleep(delay)
                if await self._restart():
                    break
                self.failed_restarts += 1
                delay = min(delay * 2, self.restart_max_delay)
                log.warning("the embedded database did not start; retrying in %.1fs", delay)
            started = time.monotonic()
            self.restarts += 1
            log.warning("the embedded database runs again on port %d", self.port)
            try:
                await on_restart()
            except Exception:
                log.exception("could not prepare the restarted embedded database")
            self.state = "running"

    async def _restart(self) -> bool:
        try:
            clear_stale_pid_file(self.data_dir)
        except EmbeddedDatabaseError as exc:  # someone else started one here meanwhile
            log.error("%s", exc)
            return False
        return await self._launch(self.port)

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

    async def stop_supervising(self) -> None:
        """Stop watching (before a deliberate stop, so it is not restarted)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL), reap it, remove its files."""
        self.state = "stopped"
        self._terminate(timeout)
        for path in (pid_file_of(self.data_dir), port_file_of(self.data_dir)):
            path.unlink(missing_ok=True)

    def _terminate(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _exit_of(process: subprocess.Popen[bytes] | None) -> str:
    if process is None or process.returncode is None:
        return "not running"
    code = process.returncode
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


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
    try:
        clear_stale_pid_file(settings.data_path)
    except EmbeddedDatabaseError as exc:
        print(f"mediasvc: {exc}", file=sys.stderr)
        return 1
    _write_atomically(port_file_of(settings.data_path), f"{settings.embedded_db_port}\n")
    os.execv(command[0], command)  # replaces this process: supervisord signals it directly
    return 0  # not reached
