"""Helpers the benchmarks share: child processes on free loopback ports, streaming uploads."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mediasvc.settings import schema

STOP_TIMEOUT = 20.0
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 120.0
LOG_TAIL_LINES = 20
T = TypeVar("T")


def service_default(name: str) -> Any:
    """The default of one of the service's settings, read from its schema (never copied)."""
    (found,) = [f for f in schema() if f.name == name]
    return found.default


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


def request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, bytes]:
    """Status and body of one request to 127.0.0.1:`port` (OSError if nothing answers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from None
    finally:
        connection.close()


def wait_until_answers(
    process: subprocess.Popen[bytes], port: int, path: str, status: int, log_path: Path
) -> None:
    """Poll `GET path` until it answers `status`; fail early if the process dies."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            code = process.returncode
            raise BenchError(f"the {log_path.stem} exited with {code}:\n{log_tail(log_path)}")
        with suppress(OSError):
            if request(port, "GET", path, {})[0] == status:
                return
        time.sleep(0.1)
    raise BenchError(f"nothing answered {status} on :{port}{path}:\n{log_tail(log_path)}")


def service_env(jwt_secret: str, settings: dict[str, str]) -> dict[str, str]:
    """This environment without any MEDIASVC_* setting of the caller (a MEDIASVC_MONGODB_URI
    would send the benchmark's records to a real database), plus the benchmark's `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MEDIASVC_")}
    return {
        **env,
        "MEDIASVC_JWT_SECRET": jwt_secret,
        "MEDIASVC_LOG_LEVEL": "warning",
        **settings,
    }


def service_command(data_dir: Path, port: int) -> list[str]:
    """The `mediasvc serve` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("mediasvc")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "mediasvc"]
    return [*program, "serve", "--data-dir", str(data_dir), "--port", str(port)]


def proc_status_kb(pid: int, key: str) -> int:
    """One `kB` figure (VmRSS, VmHWM) of /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


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


def run_bench(
    name: str, workdir: str | None, work: Callable[[Path], T], show: Callable[[T], str]
) -> int:
    """The frame every benchmark runs in: `work` in a temporary folder under `workdir`, its
    figures printed by `show`; a failure is one line and exit status 1, Ctrl-C 130."""
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-", dir=workdir) as tmp:
            results = work(Path(tmp))
    except BenchError as exc:
        print(f"{name} benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(show(results))
    return 0


# ---------------------------------------------------------------- streaming uploads


@dataclass
class Answer:
    """What a server answered to one upload, and when the client had sent its last byte."""

    status: int
    body: bytes
    sent_at: float  # time.perf_counter() after the last byte went out
    send_error: OSError | None  # the server answered early and closed (a 413, say)
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


def multipart_envelope(
    fields: dict[str, str], boundary: str, filename: str, content_type: str
) -> tuple[bytes, bytes]:
    """What goes before the file bytes (the fields, the file part's head) and after them."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    )
    return "".join(parts).encode(), f"\r\n--{boundary}--\r\n".encode()


def post_file(
    port: int,
    url_path: str,
    path: Path,
    fields: dict[str, str],
    headers: dict[str, str],
    content_type: str,
    timeout: float,
) -> Answer:
    """POST `path` to 127.0.0.1:`port` as the `file` part of a multipart/form-data body.

    The head and envelope are sent with ``sendall``, the file with ``socket.sendfile``: the
    kernel copies it from the page cache, so the client costs little CPU and no memory, as a
    high-throughput upload client would. Raises OSError or http.client.HTTPException.
    """
    boundary = f"bench{uuid.uuid4().hex}"
    before, after = multipart_envelope(fields, boundary, path.name, content_type)
    size = path.stat().st_size
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.putrequest("POST", url_path, skip_accept_encoding=True)
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Content-Length", str(len(before) + size + len(after)))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        sock = connection.sock
        assert sock is not None
        send_error: OSError | None = None
        try:
            sock.sendall(before)
            with open(path, "rb") as body:
                sock.sendfile(body)
            sock.sendall(after)
        except OSError as exc:
            send_error = exc
        sent_at = time.perf_counter()
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, response.read(), sent_at, send_error, headers)
    finally:
        connection.close()


# ---------------------------------------------------------------- resumable (tus) uploads


@dataclass
class TusAnswer:
    """How a tus upload went: the answer to its last PATCH, and the upload's URL path."""

    status: int
    body: bytes
    sent_at: float  # time.perf_counter() after the last byte of the last chunk went out
    location: str
    requests: int  # the creation and every PATCH


def tus_upload(
    port: int,
    tus_path: str,
    path: Path,
    metadata: str,
    headers: dict[str, str],
    chunk_size: int,
    timeout: float,
) -> TusAnswer:
    """Create a tus upload of `path` and PATCH it in `chunk_size` pieces, on one keep-alive
    connection, each body sent with ``socket.sendfile`` as `post_file` sends its file (no
    checksum: this measures the server's resumable path, not a client's hashing)."""
    size = path.stat().st_size
    tus = {"Tus-Resumable": "1.0.0", **headers}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "POST", tus_path, body=b"",
            headers={**tus, "Upload-Length": str(size), "Upload-Metadata": metadata},
        )  # fmt: skip
        created = connection.getresponse()
        body = created.read()
        location = created.getheader("Location") or ""
        if created.status != 201 or not location:
            return TusAnswer(created.status, body, time.perf_counter(), location, 1)
        target = "/" + location.split("/", 3)[3] if "://" in location else location
        offset, requests = 0, 1
        with open(path, "rb") as file:
            while offset < size:
                length = min(chunk_size, size - offset)
                status, body, sent_at, new = _patch(connection, target, tus, file, offset, length)
                requests += 1
                if status != 204 or new != offset + length:
                    return TusAnswer(status, body, sent_at, target, requests)
                offset = new
        return TusAnswer(204, b"", sent_at, target, requests)
    finally:
        connection.close()


def _patch(
    connection: http.client.HTTPConnection,
    target: str,
    headers: dict[str, str],
    file: Any,
    offset: int,
    length: int,
) -> tuple[int, bytes, float, int]:
    """One PATCH of `length` bytes of `file` from `offset`: status, body, when sent, offset."""
    connection.putrequest("PATCH", target, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Upload-Offset", str(offset))
    connection.putheader("Content-Type", "application/offset+octet-stream")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    assert connection.sock is not None
    connection.sock.sendfile(file, offset, length)
    sent_at = time.perf_counter()
    response = connection.getresponse()
    body = response.read()
    new_offset = int(response.getheader("Upload-Offset") or -1)
    return response.status, body, sent_at, new_offset
