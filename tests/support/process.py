"""`mediasvc serve` run as ops run it, as a subprocess the tests can signal and kill."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from mediasvc.embedded_db import free_loopback_port
from tests.support.client import API, multipart_body

BIN = Path(sys.executable).parent


def service_env(**settings: str) -> dict[str, str]:
    """This environment without the caller's MEDIASVC_* variables, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIASVC_")}
    env["MEDIASVC_LOG_LEVEL"] = "warning"
    env.update({f"MEDIASVC_{name.upper()}": value for name, value in settings.items()})
    return env


class Server:
    """A `mediasvc serve` subprocess on a free port."""

    def __init__(self, data_dir: Path, *, port: int | None = None, **settings: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_loopback_port()  # a restarted server keeps its URLs
        self.env = service_env(**settings)
        self.process = subprocess.Popen(
            [str(BIN / "mediasvc"), "serve", "--data-dir", str(data_dir), "--port", str(self.port)],
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        try:
            self.wait_ready()
        except BaseException:  # a server that never came up is not left running
            self.kill()
            raise

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "mediasvc serve exited"
            try:
                urllib.request.urlopen(self.url(f"{API}/"), timeout=1)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("mediasvc serve did not answer")

    def token(self, sub: str) -> str:
        out = subprocess.run(
            [str(BIN / "mediasvc"), "token", "--sub", sub, "--data-dir", str(self.data_dir)],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def request(
        self, method: str, path: str, token: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(self.url(path), data=body, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def upload(self, token: str, sub: str, name: str, content: bytes) -> dict[str, object]:
        body, content_type = multipart_body(
            {"entity_type": "user", "entity_id": sub}, [("file", name, content)]
        )
        status, media = self.request("POST", f"{API}/upload/", token, body, content_type)
        assert status == 201, media
        return media

    def settled(self, token: str, media_id: object, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, media = self.request("GET", f"{API}/{media_id}/", token)
            if media["status"] in ("ready", "failed"):
                return media
            time.sleep(0.1)
        raise AssertionError(f"media {media_id} did not settle")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def wait_for_descendant(self, name: str, timeout: float = 20) -> None:
        """Wait until a process called `name` runs below the server (a worker's ffmpeg, say)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in _descendant_names(self.process.pid):
                return
            time.sleep(0.02)
        raise AssertionError(f"no {name} process started")

    def kill(self) -> None:
        """SIGKILL, for clean-up after a failure."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def database_child(self) -> psutil.Process:
        children = psutil.Process(self.process.pid).children()
        (child,) = [c for c in children if "nx_27017" in " ".join(c.cmdline())]
        return child


def _descendant_names(pid: int) -> list[str]:
    """Names of the processes below `pid`; those that end while being looked at are skipped."""
    names = []
    for process in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            names.append(process.name())
    return names


def make_video(tmp_path: Path, seconds: int = 6) -> bytes:
    """A 720p H.264 test clip of `seconds` seconds (a job that runs long enough to be caught)."""
    path = tmp_path / "long.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25",
            "-t", str(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
            str(path),
        ],
        check=True,
    )  # fmt: skip
    return path.read_bytes()
