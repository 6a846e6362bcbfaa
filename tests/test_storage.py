"""The blob stores behave alike: the same tests against the local folder and S3 (SeaweedFS)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from mediasvc.settings import Settings
from mediasvc.storage.local import LocalBlobStore, UrlSigner
from tests.support.client import Client
from tests.support.media import Uploader
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY
from tests.support.service import Backend
from tests.support.tokens import Caller, make_token


def _key() -> str:
    return f"media/test/{uuid.uuid4()}/{uuid.uuid4()}.jpg"


async def test_put_read_copy_delete(
    backend: Backend, tmp_path: Path, samples: dict[str, bytes]
) -> None:
    store = backend.service.context.blobs
    key = _key()
    source = tmp_path / "spooled.jpg"
    source.write_bytes(samples["jpg"])
    await store.put_file(key, source, "image/jpeg")
    assert not source.exists()  # consumed
    assert await store.size_of(key) == len(samples["jpg"])
    assert await store.exists(key)
    assert await store.read_head(key, 4) == samples["jpg"][:4]
    copy = await store.local_copy(key, tmp_path)
    assert copy.read_bytes() == samples["jpg"]
    fetched = await backend.client.request("GET", store.url(key, backend.client.base))
    assert fetched.status == 200 and fetched.body == samples["jpg"]
    await store.delete([key, _key()])  # a missing key is ignored
    assert await store.size_of(key) is None
    assert not await store.exists(key)


async def test_large_files_go_up_in_parts(backend: Backend, tmp_path: Path) -> None:
    store = backend.service.context.blobs
    key = _key()
    content = bytes(range(256)) * (12 * 4096)  # 12 MB: more than two 5 MB parts on S3
    source = tmp_path / "big.bin"
    source.write_bytes(content)
    await store.put_file(key, source, "video/mp4")
    assert await store.size_of(key) == len(content)
    assert (await store.local_copy(key, tmp_path)).read_bytes() == content
    await store.delete([key])


async def test_uploads_and_reads_work_end_to_end(
    backend: Backend, samples: dict[str, bytes], upload_media: Uploader
) -> None:
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))
    client: Client = backend.client
    media = await upload_media(caller, "photo.png", client=client)
    fetched = await client.request("GET", media["url"])
    assert fetched.body == samples["png"]
    for _ in range(300):
        media = (
            await client.request("GET", f"/api/v1/drf/media/{media['id']}/", token=caller.token)
        ).json
        if media["status"] != "processing":
            break
        await asyncio.sleep(0.1)
    assert media["status"] == "ready", media["error"]
    thumbnail = await client.request("GET", media["thumbnail_url"])
    assert (thumbnail.status == 200 and thumbnail.body[:4] == b"\x89PNG") or thumbnail.body[
        :2
    ] == b"\xff\xd8"
    key = media["url"]
    assert (
        await client.request("DELETE", f"/api/v1/drf/media/{media['id']}/", token=caller.token)
    ).status == 204
    gone = await client.request("GET", key)
    assert gone.status in (403, 404)


def test_s3_urls_are_presigned_and_expire(s3_settings: Settings, s3_service: object) -> None:
    from mediasvc.storage.s3 import S3BlobStore

    store = S3BlobStore(s3_settings.replace(file_url_ttl=1), executor=None)  # type: ignore[arg-type]
    url = store.url("media/x/y/z.jpg", "http://ignored")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=1" in url
    public = S3BlobStore(s3_settings.replace(s3_public_base_url="https://cdn.example.com/m"), None)  # type: ignore[arg-type]
    assert public.url("media/a.jpg", "http://ignored") == "https://cdn.example.com/m/media/a.jpg"


async def test_s3_sweep_aborts_stale_multipart_uploads(
    s3_settings: Settings, s3_service: object
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_settings.s3_endpoint_url,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = s3_settings.s3_bucket
    s3.create_multipart_upload(Bucket=bucket, Key="media/stale/upload.mp4")
    time.sleep(1.1)
    store = s3_service.context.blobs  # type: ignore[attr-defined]
    assert await store.sweep_incomplete(older_than=3600) == 0  # too young
    assert await store.sweep_incomplete(older_than=1) >= 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_s3_down_is_503_not_a_hang(tmp_path: Path, samples: dict[str, bytes]) -> None:
    """With S3 unreachable, an upload answers 503 with Retry-After within seconds."""
    from mediasvc.app import start_service
    from mediasvc.embedded_db import free_loopback_port
    from tests.support.tokens import TEST_SECRET

    settings = Settings(
        data_dir=str(tmp_path), port=0, embedded_db_in_memory=True, jwt_secret=TEST_SECRET,
        log_level="critical", storage="s3", s3_bucket="b-down", s3_access_key="k",
        s3_secret_key="s", s3_endpoint_url=f"http://127.0.0.1:{free_loopback_port()}",
        s3_max_attempts=1, s3_connect_timeout=0.5, processing_enabled=False, sweep_interval=0,
    )  # fmt: skip
    with pytest.raises(Exception, match="Storage unavailable"):
        await start_service(settings)


async def test_s3_going_down_is_a_quick_503(tmp_path: Path, samples: dict[str, bytes]) -> None:
    """Stop the S3 server under a running service: uploads and readiness answer 503 fast."""
    from mediasvc.app import start_service
    from tests.support.s3 import seaweedfs
    from tests.support.service import service_settings

    with seaweedfs(tmp_path / "weed") as server:
        settings = service_settings(
            tmp_path / "var", log_level="critical", storage="s3", s3_bucket="going-down",
            s3_endpoint_url=server.endpoint, s3_access_key=S3_ACCESS_KEY,
            s3_secret_key=S3_SECRET_KEY, s3_addressing_style="path", s3_create_bucket=True,
            processing_enabled=False, sweep_interval=0,
        )  # fmt: skip
        service = await start_service(settings)
        client = Client(f"http://127.0.0.1:{service.port}")
        sub = str(uuid.uuid4())
        caller = Caller(sub, make_token(sub))
        try:
            assert (
                await client.upload(caller.token, "a.jpg", samples["jpg"], caller.entity)
            ).status == 201
            server.process.kill()
            server.process.wait()
            started = time.monotonic()
            response = await client.upload(caller.token, "b.jpg", samples["jpg"], caller.entity)
            assert time.monotonic() - started < 2.5
            assert response.status == 503, response.body
            assert response.json == {"error": "Storage unavailable, try again shortly"}
            assert response.headers["Retry-After"] == "2"
            ready = await client.request("GET", "/readyz")
            assert ready.status == 503 and ready.json["checks"]["storage"] != "ok"
            listing = await client.request(
                "GET", f"/api/v1/drf/media/?entity_id={sub}", token=caller.token
            )
            assert listing.json["count"] == 1  # the refused upload left no record
        finally:
            await service.stop()


@pytest.mark.parametrize(
    "key", ["../outside.jpg", "media/../../outside.jpg", "/etc/passwd", "", ".", "media/.."]
)
def test_local_keys_cannot_leave_the_store(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "store", UrlSigner("s" * 32, 60), ThreadPoolExecutor(1))
    with pytest.raises(ValueError, match="outside the store"):
        store.path_of(key)


def test_local_keys_name_files_inside_the_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store", UrlSigner("s" * 32, 60), ThreadPoolExecutor(1))
    root = (tmp_path / "store").resolve()
    assert store.path_of("media/a/b.jpg") == root / "media/a/b.jpg"
    assert store.path_of("media/./a/../b.jpg") == root / "media/b.jpg"


async def test_a_stored_upload_is_fsynced_with_its_folder_before_the_201(
    client: Client, settings: Settings, samples: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The durability contract of a 201: the file's bytes and its folder entry are on disk.
    The file is fsynced once (by the store), its folder after the rename."""
    synced: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    sub = str(uuid.uuid4())
    caller = Caller(sub, make_token(sub))
    response = await client.upload(caller.token, "photo.jpg", samples["jpg"], caller.entity)
    assert response.status == 201, response.body
    stored = settings.storage_path / f"media/user/{sub}/{response.json['id']}.jpg"
    file, folder = os.stat(stored), os.stat(stored.parent)
    assert synced.count((file.st_dev, file.st_ino)) == 1
    assert (folder.st_dev, folder.st_ino) in synced
