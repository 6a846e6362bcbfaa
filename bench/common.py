"""Helpers the benchmarks share: child processes on free loopback ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STOP_TIMEOUT = 20.0
LOG_TAIL_LINES = 20


class BenchError(RuntimeError):
    """Something kept the benchmark from measuring; the message says what."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL if it does not go."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running(
    command: list[str], log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in `log_path`, stopped when the block ends."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield process
    finally:
        stop_process(process)


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines a child process wrote."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def progress(message: str) -> None:
    """Progress goes to stderr, so `--json` output stays clean."""
    print(message, file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    """OK or MISSED."""
    return "OK" if ok else "MISSED"
