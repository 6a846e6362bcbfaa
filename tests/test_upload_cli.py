"""`mediasvc upload` used as a person would: a folder of mixed real media, include globs, a
run killed mid-upload and a re-run that goes on from the server's offset, connections cut
by the network, 429s from a busy server, `--wait`, `--json` and the summary table. The CLI
runs as a subprocess against the real service; a TCP proxy stands in for the network."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mediasvc.app import Service, start_service
from mediasvc.cli import main
from mediasvc.uploader.retry import Backoff
from tests.support.client import API, Client
from tests.support.early import MB, send_head
from tests.support.proxy import Proxy
from tests.support.samples import text_of
from tests.support.service import service_settings
from tests.support.tokens import Caller
from tests.support.tus import head, path_of
from tests.support.upload_cli import cli_env, finish, mediasvc_upload, start_upload

MEDIA = {
    "photos/beach.jpg": "jpg",
    "photos/logo.png": "png",
    "photos/2024/clip.mp4": "mp4",
    "audio/tone.mp3": "mp3",
    "docs/paper.pdf": "pdf",
    "docs/notes.txt": "txt",
}
LEFT_OUT = {"photos/.cache/thumb.jpg": "jpg", ".hidden.png": "png"}


def make_tree(root: Path, samples: dict[str, bytes], files: dict[str, str]) -> None:
    for relative, extension in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(samples[extension])


async def media_of(client: Client, token: str, media_id: str) -> dict[str, Any]:
    response = await client.request("GET", f"{API}/{media_id}/", token=token)
    assert response.status == 200, response.body
    record: dict[str, Any] = response.json
    return record


async def entity_media(client: Client, caller: Caller) -> list[dict[str, Any]]:
    query = f"entity_type=user&entity_id={caller.sub}&page_size=100"
    listing = await client.request("GET", f"{API}/?{query}", token=caller.token)
    assert listing.status == 200, listing.body
    results: list[dict[str, Any]] = listing.json["results"]
    return results


def state_url(state: Path) -> str | None:
    """The one unfinished upload's URL the state remembers, once it does (read through a
    read-only connection, so that polling never takes the lock the uploader writes under)."""
    if not state.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT url FROM uploads WHERE url IS NOT NULL").fetchone()
    except sqlite3.Error:  # not created yet, or busy: ask again
        return None
    return str(row[0]) if row else None


async def until(condition: Callable[[], Any], timeout: float = 30) -> Any:
    """Wait until `condition()` (awaited if it is a coroutine) is truthy; its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.fixture
async def proxy(service: Service) -> AsyncIterator[Proxy]:
    running = await Proxy(service.port).start()
    yield running
    await running.close()


async def test_a_folder_of_mixed_media_is_uploaded_processed_and_reported_as_json(
    client: Client, user: Caller, samples: dict[str, bytes], tmp_path: Path
) -> None:
    tree = tmp_path / "shoot"
    make_tree(tree, samples, {**MEDIA, **LEFT_OUT})
    (tree / "tools").mkdir()
    (tree / "tools" / "setup.exe").write_bytes(b"MZ\x90\x00 not media")
    env = cli_env(user.token, tmp_path)
    done = await mediasvc_upload(
        "shoot", "--entity", f"user:{user.sub}", "--server", client.base, "--wait", "--json",
        "--concurrency", "3", "--chunk-size", "64KB", "--state", str(tmp_path / "state.db"),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.err
    lines = done.by_path()
    assert set(lines) == {f"shoot/{p}" for p in MEDIA} | {"shoot/tools/setup.exe"}
    refused = lines.pop("shoot/tools/setup.exe")
    assert refused["status"] == "skipped" and ".exe" in refused["error"]
    for shown, line in lines.items():
        content = samples[MEDIA[shown.removeprefix("shoot/")]]
        assert line["status"] == "ready" and line["error"] is None, line
        assert line["size"] == len(content) and line["resumed_at"] == 0
        media = await media_of(client, user.token, line["media_id"])
        assert media["status"] == "ready" and media["filename"] == Path(shown).name
        assert media["sha256"] == hashlib.sha256(content).hexdigest()
        assert (media["entity_type"], media["entity_id"]) == ("user", user.sub)
        if media["media_type"] in ("image", "video"):
            assert media["thumbnail_url"], media
    names = sorted(m["filename"] for m in await entity_media(client, user))
    assert names == sorted(Path(p).name for p in MEDIA)  # nothing hidden, nothing refused
    assert state_url(tmp_path / "state.db") is None


async def test_a_re_run_sends_only_what_is_not_stored_yet(
    client: Client, user: Caller, samples: dict[str, bytes], tmp_path: Path
) -> None:
    make_tree(tmp_path / "tree", samples, MEDIA)
    args = (
        "tree", "--entity", f"user:{user.sub}", "--server", client.base, "--json",
        "--state", str(tmp_path / "state.db"),
    )  # fmt: skip
    env = cli_env(user.token, tmp_path)
    first = (await mediasvc_upload(*args, env=env, cwd=tmp_path)).by_path()
    assert not any(line["uploaded_earlier"] for line in first.values())
    stored = await entity_media(client, user)
    assert len(stored) == len(MEDIA)

    gone = first["tree/photos/beach.jpg"]["media_id"]
    deleted = await client.request("DELETE", f"{API}/{gone}/", token=user.token)
    assert deleted.status == 204
    again = await mediasvc_upload(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.err
    lines = again.by_path()
    sent = {shown for shown, line in lines.items() if not line["uploaded_earlier"]}
    assert sent == {"tree/photos/beach.jpg"}  # only the one whose media was deleted
    for shown, line in lines.items():
        if shown in sent:
            assert line["media_id"] != gone
        else:
            assert line["media_id"] == first[shown]["media_id"], line
    assert len(await entity_media(client, user)) == len(MEDIA)

    forced = await mediasvc_upload(*args, "--again", env=env, cwd=tmp_path)
    assert not any(line["uploaded_earlier"] for line in forced.lines)
    assert len(await entity_media(client, user)) == 2 * len(MEDIA)


async def test_include_globs_choose_files_in_folders(
    client: Client, user: Caller, samples: dict[str, bytes], tmp_path: Path
) -> None:
    make_tree(tmp_path / "tree", samples, MEDIA)
    done = await mediasvc_upload(
        str(tmp_path / "tree"), "--entity", f"user:{user.sub}", "--server", client.base,
        "--include", "*.jpg", "--include", "docs/*.pdf", "--json",
        env=cli_env(user.token, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.err
    shown = {Path(line["path"]).relative_to(tmp_path / "tree").as_posix() for line in done.lines}
    assert shown == {"photos/beach.jpg", "docs/paper.pdf"}
    assert {line["status"] for line in done.lines} <= {"processing", "ready"}
    assert sorted(m["filename"] for m in await entity_media(client, user)) == [
        "beach.jpg",
        "paper.pdf",
    ]
    # the state went to $XDG_STATE_HOME, and holds no unfinished upload once all are done
    state = tmp_path / "mediasvc" / "uploads.db"
    assert state.exists() and state_url(state) is None


async def test_a_killed_run_is_continued_by_the_next_from_the_servers_offset(
    client: Client, proxy: Proxy, user: Caller, tmp_path: Path
) -> None:
    content = text_of(24 * MB, seed="killed")
    (tmp_path / "long.txt").write_bytes(content)
    state = tmp_path / "state.db"
    args = (
        "long.txt", "--entity", f"user:{user.sub}", "--server", proxy.url, "--json",
        "--chunk-size", "1MB", "--state", str(state),
    )  # fmt: skip
    env = cli_env(user.token, tmp_path)
    proxy.rate = 2 * MB  # a slow line (12 s for the file): the kill lands mid-upload
    first = await start_upload(*args, env=env, cwd=tmp_path)
    try:
        url = await until(lambda: state_url(state))
        media_id = url.rsplit("/", 1)[-1]

        async def far_enough() -> bool:
            return int((await media_of(client, user.token, media_id))["upload_offset"]) >= 5 * MB

        await until(far_enough)
    finally:
        first.kill()
        await first.wait()
    answer = await head(client, user.token, path_of(url))
    reached = int(answer.headers["Upload-Offset"])
    assert 5 * MB <= reached < len(content)
    assert state_url(state) == url  # the killed run left the upload to be continued

    proxy.rate, proxy.uploaded = None, 0
    done = await finish(await start_upload(*args, env=env, cwd=tmp_path))
    assert done.returncode == 0, done.err
    (line,) = done.lines
    assert line["media_id"] == media_id and line["resumed_at"] >= reached, line
    assert proxy.uploaded < len(content) - reached + 3 * MB  # the rest, not the whole file
    media = await media_of(client, user.token, media_id)
    assert media["status"] == "ready" and media["file_size"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    assert [m["id"] for m in await entity_media(client, user)] == [media_id]
    assert state_url(state) is None


async def test_ctrl_c_stops_the_run_and_keeps_the_upload_to_continue(
    client: Client, proxy: Proxy, user: Caller, tmp_path: Path
) -> None:
    (tmp_path / "slow.txt").write_bytes(text_of(8 * MB, seed="ctrl-c"))
    state = tmp_path / "state.db"
    proxy.rate = MB // 2  # 16 s for the file: the signal lands mid-upload on a busy machine too
    run = await start_upload(
        "slow.txt", "--entity", f"user:{user.sub}", "--server", proxy.url, "--json",
        "--chunk-size", "1MB", "--state", str(state),
        env=cli_env(user.token, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    url = await until(lambda: state_url(state))
    media_id = url.rsplit("/", 1)[-1]

    async def started() -> bool:
        return int((await media_of(client, user.token, media_id))["upload_offset"]) >= MB

    await until(started)
    run.send_signal(signal.SIGINT)
    done = await finish(run, timeout=30)
    assert done.returncode == 130, done.err
    (line,) = done.lines
    assert line["status"] == "interrupted" and "run again" in line["error"], line
    assert state_url(state) == url  # kept for the next run
    media = await media_of(client, user.token, media_id)
    assert media["status"] == "pending" and 0 < media["upload_offset"] < 8 * MB


async def test_connections_cut_mid_chunk_are_resumed_within_the_run(
    client: Client, proxy: Proxy, user: Caller, tmp_path: Path
) -> None:
    content = text_of(8 * MB, seed="cut")
    (tmp_path / "report.txt").write_bytes(content)
    proxy.cut_at = 4 * MB + 300_000  # in the middle of the fifth 1 MB chunk
    done = await mediasvc_upload(
        "report.txt", "--entity", f"user:{user.sub}", "--server", proxy.url, "--json",
        "--chunk-size", "1MB", "--checksum", "sha256", "--state", str(tmp_path / "s.db"),
        env=cli_env(user.token, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.err
    (line,) = done.lines
    assert proxy.cuts == 1 and line["retries"] >= 1, line
    assert proxy.uploaded < len(content) + 2 * MB  # one chunk again, not the file again
    media = await media_of(client, user.token, line["media_id"])
    assert media["status"] == "ready" and media["sha256"] == hashlib.sha256(content).hexdigest()
    assert len(await entity_media(client, user)) == 1


@pytest.fixture
async def busy_service(tmp_path: Path) -> AsyncIterator[Service]:
    """A service that takes one upload at a time and answers the next 429 at once."""
    settings = service_settings(
        tmp_path / "busy", max_concurrent_uploads=1, upload_slot_wait=0,
        processing_enabled=False, sweep_interval=0, linger_idle_timeout=0.5,
    )  # fmt: skip
    running = await start_service(settings)
    yield running
    await running.stop()


async def test_429_is_retried_as_retry_after_says_until_a_slot_is_free(
    busy_service: Service, user: Caller, tmp_path: Path
) -> None:
    service = busy_service
    client = Client(f"http://127.0.0.1:{service.port}")
    head_of_upload = (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {user.token}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b"
    )
    _reader, holder = await send_head(service.port, head_of_upload)  # holds the only slot
    try:
        await until(lambda: service.context.uploads.count == 1)
        content = text_of(2 * MB, seed="busy")
        (tmp_path / "later.txt").write_bytes(content)
        state = tmp_path / "state.db"
        run = await start_upload(
            "later.txt", "--entity", f"user:{user.sub}", "--server", client.base, "--json",
            "--chunk-size", "1MB", "--retries", "30", "--state", str(state),
            env=cli_env(user.token, tmp_path), cwd=tmp_path,
        )  # fmt: skip
        await until(lambda: state_url(state))  # created: its PATCHes get 429s now
        await asyncio.sleep(2.5)
        assert run.returncode is None  # still trying
    finally:
        holder.close()
    done = await finish(run)
    assert done.returncode == 0, done.err
    (line,) = done.lines
    assert line["retries"] >= 1 and line["error"] is None, line
    media = await media_of(client, user.token, line["media_id"])
    assert media["sha256"] == hashlib.sha256(content).hexdigest()


async def test_a_refused_file_fails_the_run_and_the_table_says_why(
    client: Client, user: Caller, samples: dict[str, bytes], tmp_path: Path
) -> None:
    (tmp_path / "good.jpg").write_bytes(samples["jpg"])
    (tmp_path / "fake.png").write_bytes(b"plain text and not a PNG image\n" * 100)
    done = await mediasvc_upload(
        "good.jpg", "fake.png", "--entity", f"user:{user.sub}", "--server", client.base,
        "--state", str(tmp_path / "state.db"),
        env=cli_env(user.token, tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.err
    table = done.out.splitlines()
    assert any(row.startswith("good.jpg") and "processing" in row for row in table), done.out
    assert any(row.startswith("fake.png") and "failed*" in row for row in table), done.out
    assert "* fake.png: File content (text/plain) does not match its extension 'png'" in done.out
    assert "1 uploaded, 1 failed, 0 skipped" in done.out
    failed = [m for m in await entity_media(client, user) if m["filename"] == "fake.png"]
    assert [m["status"] for m in failed] == ["failed"]


async def test_title_description_and_alt_text_are_for_one_file(
    client: Client, service: Service, user: Caller, samples: dict[str, bytes], tmp_path: Path
) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(samples["jpg"])
    # no --server: the configured public URL is the default
    env = cli_env(user.token, tmp_path, public_url=client.base)
    several = await mediasvc_upload(
        "a.jpg", "b.jpg", "--entity", f"user:{user.sub}", "--title", "Two?", env=env, cwd=tmp_path
    )
    assert several.returncode == 2
    assert "--title: for one file only; the paths name 2" in several.err
    assert await entity_media(client, user) == []
    one = await mediasvc_upload(
        "a.jpg", "--entity", f"user:{user.sub}", "--json", "--title", "Dunes",
        "--description", "Late light", "--alt-text", "Sand dunes at dusk",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert one.returncode == 0, one.err
    media = await media_of(client, user.token, one.lines[0]["media_id"])
    assert (media["title"], media["description"], media["alt_text"]) == (
        "Dunes",
        "Late light",
        "Sand dunes at dusk",
    )


def test_command_line_mistakes_are_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.delenv("MEDIASVC_TOKEN", raising=False)
    common = ["upload", str(tmp_path / "a.jpg"), "--server", "http://127.0.0.1:9"]
    assert main([*common, "--entity", "user:x"]) == 2
    assert "MEDIASVC_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("MEDIASVC_TOKEN", "t")
    for bad in (["--entity", "user"], ["--entity", "user:x", "--chunk-size", "1KB"]):
        assert main([*common, *bad]) == 2
        assert "mediasvc upload:" in capsys.readouterr().err


def test_the_token_variable_is_no_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A shell that exports MEDIASVC_TOKEN for uploads still runs the other commands."""
    token = str(uuid.uuid4())
    monkeypatch.setenv("MEDIASVC_TOKEN", token)
    assert main(["config", "--data-dir", str(tmp_path)]) == 0
    assert token not in capsys.readouterr().out


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    backoff = Backoff(base=0.5, cap=8.0)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (6, 8.0), (20, 8.0)):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert all(3.0 <= backoff.delay(1, retry_after=3.0) <= 3.5 for _ in range(50))
    assert backoff.delay(1, retry_after=10_000) <= backoff.longest + backoff.base
