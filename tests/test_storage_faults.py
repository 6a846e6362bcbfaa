"""Server-side storage trouble gets a clear answer and leaves nothing half-done.

S3 failures of every kind (5xx such as InternalError, SlowDown throttling, refused
credentials, timeouts) are 503 with Retry-After. A full disk while spooling, while storing
or during a local presigned PUT is 507, with no spool file, no stored file and no record.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo.errors import BulkWriteError, OperationFailure, WriteError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from mediasvc.app import Service, start_service
from mediasvc.errors import InsufficientStorage, full_disk_is_507
from mediasvc.repository import OUT_OF_DISK_SPACE, SQLITE_FULL, database_errors
from mediasvc.settings import MB
from tests.support.client import API, Client, multipart_body
from tests.support.process import Server
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server
from tests.support.service import service_settings
from tests.support.tokens import Caller, make_token

UNAVAILABLE = {"error": "Storage unavailable, try again shortly"}
DATABASE_FULL = {"error": "Not enough storage space for the database; try again later"}
FULL = {"error": "Not enough storage space for this upload; try again later"}
READ_TIMEOUT = 2.0  # s3_read_timeout of the service behind the stand-in


def _caller() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


async def _count(client: Client, caller: Caller) -> int:
    listing = await client.request("GET", f"{API}/?entity_id={caller.sub}", token=caller.token)
    assert listing.status == 200, listing.body
    count: int = listing.json["count"]
    return count


# ---- S3 answering errors


@dataclass
class Faults:
    """What the stand-in answers instead of forwarding: (S3 error code, HTTP status), or
    "slow" (answers later than the service waits)."""

    now: tuple[str, int] | str | None = None


class S3StandIn(tornado.web.RequestHandler):
    """A loopback proxy in front of the real SeaweedFS that can answer like a failing S3.

    SeaweedFS cannot be told to fail with InternalError or SlowDown, and stopping it only
    tests "unreachable"; so this stand-in forwards requests untouched (the Host header kept,
    so signatures still verify) and, when told, answers with S3's own error document
    instead. Only the error answers are made up; every other answer is SeaweedFS's.
    """

    SUPPORTED_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")

    def initialize(self, upstream: str, faults: Faults) -> None:
        self.upstream = upstream
        self.faults = faults

    async def _handle(self) -> None:
        fault = self.faults.now
        if fault == "slow":  # the service has given up by then
            await asyncio.sleep(READ_TIMEOUT * 3)
            return
        if isinstance(fault, tuple):
            code, status = fault
            self.set_status(status)
            self.set_header("Content-Type", "application/xml")
            if self.request.method != "HEAD":
                self.write(
                    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                    f"{code}</Code><Message>stand-in failure</Message>"
                    "<RequestId>standin</RequestId></Error>"
                )
            return
        await self._forward()

    async def _forward(self) -> None:
        request = self.request
        headers = {
            name: value
            for name, value in request.headers.get_all()
            if name.lower() not in ("content-length", "expect", "transfer-encoding")
        }
        answer = await AsyncHTTPClient().fetch(
            HTTPRequest(
                self.upstream + request.uri,
                method=request.method,
                headers=headers,
                body=request.body if request.method in ("PUT", "POST", "DELETE") else None,
                allow_nonstandard_methods=True,
                follow_redirects=False,
                decompress_response=False,
                request_timeout=30,
            ),
            raise_error=False,
        )
        self.set_status(answer.code if answer.code != 599 else 502)
        self.clear_header("Content-Type")
        for name, value in answer.headers.get_all():
            if name.lower() not in ("transfer-encoding", "connection", "date", "server"):
                self.add_header(name, value)
        if request.method != "HEAD" and answer.body:
            self.write(answer.body)

    get = head = put = post = delete = _handle


@dataclass
class FaultyS3:
    service: Service
    client: Client
    faults: Faults


@pytest.fixture(scope="module")
async def faulty_s3(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FaultyS3]:
    faults = Faults()
    app = tornado.web.Application(
        [(r".*", S3StandIn, {"upstream": s3_server.endpoint, "faults": faults})]
    )
    proxy = tornado.httpserver.HTTPServer(app, max_body_size=64 * MB)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    proxy.add_sockets([sock])
    settings = service_settings(
        tmp_path_factory.mktemp("faulty-s3"), log_level="critical", storage="s3",
        s3_endpoint_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        s3_bucket=f"faults-{uuid.uuid4().hex[:12]}", s3_access_key=S3_ACCESS_KEY,
        s3_secret_key=S3_SECRET_KEY, s3_addressing_style="path", s3_create_bucket=True,
        s3_max_attempts=1, s3_read_timeout=READ_TIMEOUT, processing_enabled=False,
        sweep_interval=0,
    )  # fmt: skip
    service = await start_service(settings)
    client = Client(f"http://127.0.0.1:{service.port}")
    try:
        await _warm_up(client)
        yield FaultyS3(service, client, faults)
    finally:
        await service.stop()
        proxy.stop()
        await proxy.close_all_connections()


async def _warm_up(client: Client) -> None:
    """SeaweedFS makes its volumes on the first write, which may take longer than the short
    read timeout of this service: write once (retrying) before timing anything."""
    caller = _caller()
    for _ in range(10):
        body, content_type = multipart_body(caller.entity, [("file", "w.txt", b"warm\n")])
        response = await client.request(
            "POST", f"{API}/upload/", token=caller.token, body=body,
            headers={"Content-Type": content_type},
        )  # fmt: skip
        if response.status == 201:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("SeaweedFS behind the stand-in never took a write")


S3_FAULTS = [
    pytest.param(("InternalError", 500), id="InternalError"),
    pytest.param(("SlowDown", 503), id="SlowDown"),
    pytest.param(("ServiceUnavailable", 503), id="ServiceUnavailable"),
    pytest.param(("AccessDenied", 403), id="AccessDenied"),
    pytest.param("slow", id="timeout"),
]


@pytest.mark.parametrize("fault", S3_FAULTS)
async def test_any_s3_failure_is_503_with_retry_after(
    faulty_s3: FaultyS3, samples: dict[str, bytes], fault: Any
) -> None:
    client, caller = faulty_s3.client, _caller()
    assert (await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)).status == 201
    faulty_s3.faults.now = fault
    try:
        started = time.monotonic()
        refused = await client.upload(caller.token, "b.jpg", samples["jpg"], caller.entity)
        assert time.monotonic() - started < READ_TIMEOUT + 3  # bounded by s3_read_timeout
        ready = await client.request("GET", "/readyz")
    finally:
        faulty_s3.faults.now = None
    assert (refused.status, refused.json) == (503, UNAVAILABLE)
    assert refused.headers["Retry-After"] == "2"
    assert ready.status == 503 and ready.headers["Retry-After"]
    assert await _count(client, caller) == 1  # the refused upload left no record
    assert list(faulty_s3.service.context.settings.spool_path.glob("upload-*")) == []
    again = await client.upload(caller.token, "c.jpg", samples["jpg"], caller.entity)
    assert again.status == 201  # and S3 back to normal means uploads work again


async def test_confirming_a_presigned_upload_while_s3_fails_is_503(
    faulty_s3: FaultyS3, samples: dict[str, bytes]
) -> None:
    """The HEAD of the uploaded object fails: 503, the media stays pending, and confirming
    again once S3 answers moves it on."""
    client, caller = faulty_s3.client, _caller()
    content = samples["png"]
    created = await client.request(
        "POST", f"{API}/presigned_upload/", token=caller.token,
        json_body={"filename": "p.png", "content_type": "image/png", **caller.entity,
                   "file_size": len(content)},
    )  # fmt: skip
    assert created.status == 201, created.body
    put = await client.request(
        "PUT", created.json["upload_url"], body=content, headers=created.json["upload_headers"]
    )
    assert put.status == 200, put.body
    confirm = f"{API}/{created.json['media_id']}/confirm_upload/"
    faulty_s3.faults.now = ("InternalError", 500)
    try:
        refused = await client.request("POST", confirm, token=caller.token)
    finally:
        faulty_s3.faults.now = None
    assert (refused.status, refused.json) == (503, UNAVAILABLE)
    assert refused.headers["Retry-After"] == "2"
    media = await client.request("GET", f"{API}/{created.json['media_id']}/", token=caller.token)
    assert media.json["status"] == "pending"
    confirmed = await client.request("POST", confirm, token=caller.token)
    assert confirmed.status == 200 and confirmed.json["status"] == "processing", confirmed.body


# ---- a full disk


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real small file system at `path` (we run as root); skipped where mounting is not
    permitted (an unprivileged container)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command")
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def filled(folder: Path, leave: int) -> Iterator[None]:
    """The file system of `folder` full but for `leave` bytes, while inside."""
    filler = folder / "filler"
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, free - leave)
    finally:
        os.close(fd)
    try:
        yield
    finally:
        filler.unlink()


@dataclass
class SmallDisks:
    service: Service
    client: Client
    spool: Path
    store: Path

    def leftovers(self) -> list[Path]:
        """Anything in the spool or the store but the fillers."""
        found = [*self.spool.rglob("*"), *self.store.rglob("*")]
        return [p for p in found if p.is_file() and p.name != "filler"]


@pytest.fixture(scope="module")
async def small_disks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SmallDisks]:
    """A service whose spool and store are each a 20 MB tmpfs (two file systems: storing
    copies across them, as with a spool on a fast local disk and the store elsewhere)."""
    root = tmp_path_factory.mktemp("small-disks")
    with tmpfs(root / "spool", "20m") as spool, tmpfs(root / "store", "20m") as store:
        settings = service_settings(
            root / "var", log_level="critical", spool_dir=str(spool), storage_dir=str(store),
            processing_enabled=False, sweep_interval=0,
        )  # fmt: skip
        service = await start_service(settings)
        try:
            yield SmallDisks(service, Client(f"http://127.0.0.1:{service.port}"), spool, store)
        finally:
            await service.stop()


def _photo(samples: dict[str, bytes], size: int = 3 * MB) -> bytes:
    """A 3 MB JPEG (a real one, padded after its end marker as cameras pad theirs)."""
    return samples["jpg"] + b"\0" * (size - len(samples["jpg"]))


@pytest.mark.parametrize("full", ["spool", "store"])
async def test_full_disk_while_uploading_is_507_and_keeps_nothing(
    small_disks: SmallDisks, samples: dict[str, bytes], full: str
) -> None:
    client, caller = small_disks.client, _caller()
    content = _photo(samples)
    before = small_disks.leftovers()
    with filled(getattr(small_disks, full), leave=1 * MB):
        refused = await client.upload(caller.token, "big.jpg", content, caller.entity)
        assert (refused.status, refused.json) == (507, FULL), refused.body
        body, content_type = multipart_body(
            caller.entity, [("files", "one.jpg", content), ("files", "two.jpg", content)]
        )
        batch = await client.request(
            "POST", f"{API}/batch_upload/", token=caller.token, body=body,
            headers={"Content-Type": content_type},
        )  # fmt: skip
        assert (batch.status, batch.json) == (507, FULL), batch.body
        assert small_disks.leftovers() == before
    assert await _count(client, caller) == 0
    stored = await client.upload(caller.token, "big.jpg", content, caller.entity)
    assert stored.status == 201, stored.body  # with room again, the same upload works
    [kept] = set(small_disks.leftovers()) - set(before)
    assert kept.read_bytes() == content and kept.is_relative_to(small_disks.store)


@pytest.mark.parametrize("full", ["spool", "store"])
async def test_full_disk_during_a_presigned_put_is_507_and_keeps_nothing(
    small_disks: SmallDisks, samples: dict[str, bytes], full: str
) -> None:
    client, caller = small_disks.client, _caller()
    content = _photo(samples)
    created = await client.request(
        "POST", f"{API}/presigned_upload/", token=caller.token,
        json_body={"filename": "big.jpg", "content_type": "image/jpeg", **caller.entity,
                   "file_size": len(content)},
    )  # fmt: skip
    assert created.status == 201, created.body
    url, headers = created.json["upload_url"], created.json["upload_headers"]
    confirm = f"{API}/{created.json['media_id']}/confirm_upload/"
    before = small_disks.leftovers()
    with filled(getattr(small_disks, full), leave=1 * MB):
        refused = await client.request("PUT", url, body=content, headers=headers)
        assert (refused.status, refused.json) == (507, FULL), refused.body
        assert small_disks.leftovers() == before
    unconfirmed = await client.request("POST", confirm, token=caller.token)
    assert (unconfirmed.status, unconfirmed.json) == (409, {"error": "upload not found"})
    put = await client.request("PUT", url, body=content, headers=headers)
    assert put.status == 200, put.body  # the URL still works once there is room
    assert (await client.request("POST", confirm, token=caller.token)).status == 200


async def test_a_store_that_refuses_writes_is_503(
    small_disks: SmallDisks, samples: dict[str, bytes]
) -> None:
    """A read-only (or failing) store folder is storage trouble like S3's: 503, nothing kept."""
    client, caller = small_disks.client, _caller()
    before = small_disks.leftovers()
    store = str(small_disks.store)
    subprocess.run(["mount", "-o", "remount,ro", store], check=True)
    try:
        refused = await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", store], check=True)
    assert (refused.status, refused.json) == (503, UNAVAILABLE)
    assert refused.headers["Retry-After"] == "2"
    assert small_disks.leftovers() == before and await _count(client, caller) == 0


async def test_a_full_database_disk_is_507_and_leaves_no_file_behind(
    tmp_path: Path, samples: dict[str, bytes]
) -> None:
    """The database's own disk full (the embedded server's file on a 30 MB tmpfs; spool and
    store elsewhere): uploads, keyed uploads and edits are 507 JSON, the file stored before
    the record is removed again, and once there is room the same requests work."""
    with tmpfs(tmp_path / "var", "30m") as var:
        store = tmp_path / "store"
        settings = service_settings(
            var, embedded_db_in_memory=False, spool_dir=str(tmp_path / "spool"),
            storage_dir=str(store), processing_enabled=False, sweep_interval=0,
            log_level="critical",
        )  # fmt: skip
        service = await start_service(settings)
        client, caller = Client(f"http://127.0.0.1:{service.port}"), _caller()
        key = {"Idempotency-Key": "full-database"}
        try:
            first = await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)
            assert first.status == 201, first.body
            with filled(var, leave=0):
                for headers in ({}, key):
                    refused = await client.upload(
                        caller.token, "b.jpg", samples["jpg"], caller.entity, headers=headers
                    )
                    assert (refused.status, refused.json) == (507, DATABASE_FULL), refused.body
                edit = await client.request(
                    "PATCH", f"{API}/{first.json['id']}/", token=caller.token,
                    body=json.dumps({"title": "x" * 255}).encode(),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                # the embedded server answers a findAndModify it could not write as "no
                # document" (MongoDB says OutOfDiskSpace, a 507): the service cannot tell a
                # full disk from another refusal there, and says try again
                assert edit.status in (503, 507) and set(edit.json) == {"error"}, edit.body
                listed = await client.request("GET", f"{API}/", token=caller.token)
                assert listed.status == 200 and listed.json["count"] == 1  # reads go on
            stored = [p for p in store.rglob("*") if p.is_file()]
            assert [p.read_bytes() for p in stored] == [samples["jpg"]]  # none without record
            media = await client.request("GET", f"{API}/{first.json['id']}/", token=caller.token)
            assert media.json["title"] == ""  # the edit did not half happen
            again = await client.upload(
                caller.token, "b.jpg", samples["jpg"], caller.entity, headers=key
            )
            assert again.status == 201 and "Idempotent-Replayed" not in again.headers
            assert await _count(client, caller) == 2
        finally:
            await service.stop()


def test_database_errors_tell_a_full_disk_from_other_refusals() -> None:
    """MongoDB's OutOfDiskSpace cannot be provoked here (no MongoDB server runs in the
    suite): the errors it and the embedded server raise are built as pymongo builds them."""
    mongodb = OperationFailure("Out of disk space", OUT_OF_DISK_SPACE, {"code": OUT_OF_DISK_SPACE})
    embedded = WriteError("database or disk is full", SQLITE_FULL, {"code": SQLITE_FULL})
    bulk = BulkWriteError(
        {"writeErrors": [{"index": 0, "code": SQLITE_FULL, "errmsg": "database or disk is full"}]}
    )
    for full in (mongodb, embedded, bulk):
        with pytest.raises(InsufficientStorage) as caught, database_errors():
            raise full
        assert caught.value.status == 507
    other = WriteError("Document failed validation", 121, {"code": 121})
    with pytest.raises(WriteError), database_errors():
        raise other
    unknown = WriteError("something else", SQLITE_FULL, {"code": SQLITE_FULL})
    with pytest.raises(WriteError), database_errors():
        raise unknown


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_out_of_space_and_over_quota_are_both_507(code: int) -> None:
    """EDQUOT cannot be provoked without setting up disk quotas; it takes the same path."""
    with pytest.raises(InsufficientStorage) as caught, full_disk_is_507("a test"):
        raise OSError(code, os.strerror(code))
    assert caught.value.status == 507
    with pytest.raises(PermissionError), full_disk_is_507("a test"):
        raise PermissionError(errno.EACCES, "other errors pass")


def test_s3_signing_without_credentials_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no keys set and none in the AWS chain, a presigned URL cannot be made: storage
    trouble (503), not a 500."""
    from concurrent.futures import ThreadPoolExecutor

    from mediasvc.errors import Unavailable
    from mediasvc.storage.s3 import S3BlobStore

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    settings = service_settings(tmp_path, storage="s3", s3_bucket="b", s3_access_key="")
    with ThreadPoolExecutor(1) as executor:
        store = S3BlobStore(settings, executor)
        with pytest.raises(Unavailable):
            store.presign_upload("media/x/y.jpg", "image/jpeg", 10, 60, "http://unused")
        with pytest.raises(Unavailable):
            store.url("media/x/y.jpg", "http://unused")


def test_a_full_data_disk_does_not_take_the_server_down(
    tmp_path: Path, samples: dict[str, bytes]
) -> None:
    """`mediasvc serve` with its whole data folder (database, spool, store) on a disk that
    fills up: reads still answer, writes answer 503/507, and the process stays up.

    Its metrics are memory-mapped files; on the data disk, the first page they could not
    allocate killed the server with SIGBUS. Nor is a record whose counter could not be
    written reported as missing (404)."""
    with tmpfs(tmp_path / "disk", "40m") as disk:
        server = Server(disk / "var", processing_enabled="false", sweep_interval="0")
        try:
            sub = str(uuid.uuid4())
            token = server.token(sub)
            media = server.upload(token, sub, "photo.jpg", _photo(samples))
            item = f"{API}/{media['id']}/"
            with filled(disk, leave=0):
                for attempt in range(10):
                    status, body = server.request("GET", item, token)
                    assert status in (200, 503), (attempt, status, body)
                    patch = json.dumps({"title": f"try {attempt} " + "x" * 200}).encode()
                    status, body = server.request("PATCH", item, token, patch, "application/json")
                    assert status in (200, 503, 507), (attempt, status, body)
                    status, body = server.request("GET", f"{API}/?limit=5", token)
                    assert status in (200, 503), (attempt, status, body)
                    photo = _photo(samples, 1 * MB)
                    body, content_type = multipart_body(
                        {"entity_type": "user", "entity_id": sub}, [("file", "more.jpg", photo)]
                    )
                    status, answer = server.request(
                        "POST", f"{API}/upload/", token, body, content_type
                    )
                    assert status in (503, 507), (attempt, status, answer)
                assert server.process.poll() is None, "the server died on the full disk"
            status, body = server.request("GET", item, token)
            assert status == 200 and body["id"] == media["id"], body
        finally:
            server.kill()
