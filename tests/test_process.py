"""`mediasvc serve` as ops run it: embedded database as a child, secrets, shutdown, persistence."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mediasvc.embedded_db import EmbeddedMongo, free_loopback_port
from tests.support.client import API, multipart_body
from tests.support.process import BIN, Server, make_video, service_env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "var")
    yield running
    running.kill()


def test_serve_with_embedded_defaults(server: Server) -> None:
    secret = server.data_dir / "secrets" / "jwt_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    child = server.database_child()
    assert child.is_running()
    assert (server.data_dir / "db").is_dir()
    sub = str(uuid.uuid4())
    token = server.token(sub)
    body, content_type = multipart_body(
        {"entity_type": "user", "entity_id": sub}, [("file", "notes.txt", b"hello\n")]
    )
    status, media = server.request("POST", f"{API}/upload/", token, body, content_type)
    assert status == 201 and media["status"] == "ready"
    assert (server.data_dir / "media" / "media" / "user" / sub / f"{media['id']}.txt").exists()

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0
    psutil.wait_procs([child], timeout=10)
    assert not child.is_running()

    # Same data folder: same secret (the old token still works) and the record persisted.
    again = Server(server.data_dir)
    try:
        status, listing = again.request("GET", f"{API}/?entity_id={sub}", token)
        assert status == 200 and listing["count"] == 1
    finally:
        again.process.terminate()
        again.process.wait(timeout=15)


def test_killed_server_leaves_no_orphan_database(server: Server) -> None:
    child = server.database_child()
    server.process.kill()
    server.process.wait()
    gone, _ = psutil.wait_procs([child], timeout=10)
    assert gone, "the embedded database outlived its server"


def test_invalid_setting_stops_startup(tmp_path: Path) -> None:
    env = {**os.environ, "MEDIASVC_MAX_VIDEO_SIZE": "lots"}
    result = subprocess.run(
        [str(BIN / "mediasvc"), "serve", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "setting max_video_size" in result.stderr


def test_jobs_in_flight_survive_a_killed_server(tmp_path: Path) -> None:
    """SIGKILL the server mid-job: after a restart the job's lease expires and it completes."""
    data = tmp_path / "var"
    first = Server(data, job_lease="2", dispatcher_poll_interval="0.2")
    sub = str(uuid.uuid4())
    token = first.token(sub)
    try:
        media = first.upload(token, sub, "clip.mp4", make_video(tmp_path))
        first.wait_for_descendant("ffmpeg")  # a worker is transcoding it
        children = psutil.Process(first.process.pid).children(recursive=True)
    finally:
        first.kill()
    _, alive = psutil.wait_procs(children, timeout=10)  # database, forkserver, workers, ffmpeg
    assert not alive, f"left behind: {[p.cmdline()[:3] for p in alive]}"
    second = Server(data, job_lease="2", dispatcher_poll_interval="0.2")
    try:
        done = second.settled(token, media["id"], timeout=90)
        assert done["status"] == "ready", done["error"]
        job = done["job"]
        assert isinstance(job, dict) and job["attempts"] == 2
    finally:
        second.stop()


def test_worker_node_processes_for_an_api_only_node(tmp_path: Path) -> None:
    """`serve` with processing off and `mediasvc worker` share one external database."""
    port = free_loopback_port()
    database = subprocess.Popen(
        EmbeddedMongo(tmp_path / "db", in_memory=True, start_timeout=20).command(port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    data = tmp_path / "var"
    worker = None
    try:
        api = Server(data, mongodb_uri=uri, processing_enabled="false")
        worker = subprocess.Popen(
            [str(BIN / "mediasvc"), "worker", "--data-dir", str(data)],
            env=service_env(mongodb_uri=uri, dispatcher_poll_interval="0.2"),
            stdin=subprocess.DEVNULL,
        )
        sub = str(uuid.uuid4())
        token = api.token(sub)
        media = api.upload(token, sub, "notes.pdf", _pdf())
        done = api.settled(token, media["id"])
        assert done["status"] == "ready", done["error"]
        assert [v["name"] for v in done["variants"]] == ["thumbnail"]  # type: ignore[union-attr]
        assert not [p for p in psutil.Process(api.process.pid).children(recursive=True)], (
            "the API-only node started workers"
        )
        api.stop()
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        database.terminate()
        database.wait(timeout=10)


def _pdf() -> bytes:
    from tests.support.samples import tiny_pdf

    return tiny_pdf()


def test_gc_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "mediasvc"), "gc", "--data-dir", str(tmp_path)],
        env=service_env(embedded_db_in_memory="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "expired_uploads": 0,
        "expired_resumable_uploads": 0,
        "aborted_multipart_uploads": 0,
        "orphaned_spool_entries": 0,
        "deleted_files": 0,
        "pending_deletions": 0,
        "requeued_jobs": 0,
        "expired_idempotency_keys": 0,
    }


def test_sigterm_lets_an_upload_in_flight_finish(tmp_path: Path) -> None:
    """SIGTERM mid-upload: the upload completes (201), nothing is lost, the process exits 0."""
    import socket

    data = tmp_path / "var"
    server = Server(data)
    sub = str(uuid.uuid4())
    token = server.token(sub)
    content = b"plain text line\n" * 400_000  # 6.4 MB, sent slowly
    body, content_type = multipart_body(
        {"entity_type": "user", "entity_id": sub}, [("file", "big.txt", content)]
    )
    head = (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        chunk = 256 * 1024
        for offset in range(0, len(body), chunk):
            sock.sendall(body[offset : offset + chunk])
            if offset == 4 * chunk:
                server.process.send_signal(signal.SIGTERM)
            time.sleep(0.02)
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 201"), answer[:200]
    assert server.process.wait(timeout=30) == 0
    again = Server(data)
    try:
        status, listing = again.request("GET", f"{API}/?entity_id={sub}", token)
        assert status == 200 and listing["count"] == 1
        stored = data / "media" / "media" / "user" / sub
        assert [p.read_bytes() == content for p in stored.iterdir()] == [True]
    finally:
        again.stop()


def test_sigterm_hands_running_jobs_back(tmp_path: Path) -> None:
    """A job still running at the deadline goes back to the queue and completes later."""
    data = tmp_path / "var"
    first = Server(data, shutdown_timeout="0.5", dispatcher_poll_interval="0.2")
    sub = str(uuid.uuid4())
    token = first.token(sub)
    try:
        media = first.upload(token, sub, "clip.mp4", make_video(tmp_path, seconds=8))
        first.wait_for_descendant("ffmpeg")
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=30) == 0
    finally:
        first.kill()
    second = Server(data, dispatcher_poll_interval="0.2")
    try:
        done = second.settled(token, media["id"], timeout=120)
        assert done["status"] == "ready", done["error"]
        job = done["job"]
        assert isinstance(job, dict) and job["attempts"] == 1  # handed back, not charged
    finally:
        second.stop()
