"""S3-compatible object storage (AWS S3, Cloudflare R2, SeaweedFS, MinIO) through boto3.

boto3 is blocking, so every call runs in a thread pool of its own: the event loop never
waits on S3. Large originals go up as multipart uploads straight from the spool file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mediasvc.errors import Unavailable
from mediasvc.settings import Settings
from mediasvc.storage import BlobStore, PresignedUpload

log = logging.getLogger(__name__)
T = TypeVar("T")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_READ_CHUNK = 1024 * 1024


class S3BlobStore(BlobStore):
    """A bucket; keys are the server-made storage keys."""

    def __init__(self, settings: Settings, executor: ThreadPoolExecutor) -> None:
        self.bucket = settings.s3_bucket
        self.public_base_url = settings.s3_public_base_url.rstrip("/")
        self.url_ttl = settings.file_url_ttl
        self.retry_after = settings.storage_retry_after
        self._executor = executor
        s3_options: Any = {"addressing_style": settings.s3_addressing_style}
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None,
            config=Config(
                signature_version="s3v4",
                s3=s3_options,
                connect_timeout=settings.s3_connect_timeout,
                read_timeout=settings.s3_read_timeout,
                retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
                max_pool_connections=settings.s3_threads,
            ),
        )
        chunk = settings.s3_multipart_chunk_size
        self._transfer = TransferConfig(
            multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4
        )
        self._create_bucket = settings.s3_create_bucket

    async def start(self) -> None:
        """Check the bucket (creating it when the settings say so)."""
        if self._create_bucket:
            await self._call(self._ensure_bucket)
        await self.check()

    def _ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in _MISSING and _code(exc) != "NoSuchBucket":
                raise
            self._client.create_bucket(Bucket=self.bucket)

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        def upload() -> None:
            self._client.upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=self._transfer,
            )
            path.unlink(missing_ok=True)

        await self._call(upload)

    async def delete(self, keys: Iterable[str]) -> None:
        batch = list(keys)
        for start in range(0, len(batch), 1000):
            objects = [{"Key": key} for key in batch[start : start + 1000]]
            answer = await self._call(
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": objects, "Quiet": True},
            )
            failed = answer.get("Errors") or []
            if failed:  # per-key failures come in a 200: they must not pass for done
                first = failed[0]
                raise OSError(f"could not delete {len(failed)} objects: {first.get('Code')}")

    async def size_of(self, key: str) -> int | None:
        try:
            head = await self._call(self._client.head_object, Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    async def read_head(self, key: str, length: int) -> bytes:
        def read() -> bytes:
            response = self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
            return bytes(response["Body"].read())

        return await self._call(read)

    async def local_copy(self, key: str, work_dir: Path) -> Path:
        target = work_dir / ("source." + key.rsplit(".", 1)[-1])
        await self._call(
            self._client.download_file, self.bucket, key, str(target), Config=self._transfer
        )
        return target

    def url(self, key: str, base_url: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{key}"
        # Presigning is local computation (no network): fine on the event loop.
        with self._signing():
            url: str = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_ttl
            )
        return url

    def presign_upload(
        self, key: str, content_type: str, size: int, ttl: int, base_url: str
    ) -> PresignedUpload:
        with self._signing():
            url: str = self._client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
                ExpiresIn=ttl,
            )
        return PresignedUpload(url, {"Content-Type": content_type}, int(time.time()) + ttl)

    async def digest(self, key: str) -> str:
        def read() -> str:
            digest = hashlib.sha256()
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(_READ_CHUNK):
                digest.update(chunk)
            return digest.hexdigest()

        return await self._call(read)

    @property
    def takes_parts(self) -> bool:
        return True

    async def start_parts(self, key: str, content_type: str) -> str:
        answer = await self._call(
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
        )
        return str(answer["UploadId"])

    async def put_part(self, key: str, upload_id: str, number: int, path: Path) -> str:
        def upload() -> str:
            with open(path, "rb") as body:
                answer = self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
            return str(answer["ETag"])

        return await self._call(upload)

    async def finish_parts(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        listed = [{"PartNumber": number, "ETag": tag} for number, tag in parts]

        def complete() -> None:
            try:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": listed},
                )
            except ClientError as exc:
                if _code(exc) == "NoSuchUpload":
                    raise FileNotFoundError(upload_id) from None
                raise

        await self._call(complete)

    async def abort_parts(self, key: str, upload_id: str) -> None:
        def abort() -> None:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":
                    raise

        await self._call(abort)

    async def sweep_incomplete(self, older_than: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)

        def sweep() -> int:
            aborted = 0
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
            return aborted

        return await self._call(sweep)

    async def check(self) -> None:
        await self._call(self._client.head_bucket, Bucket=self.bucket)

    async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a boto3 call in the S3 threads; every failure of S3 itself becomes a 503.

        Nothing a client sent reaches S3 (keys, sizes and types are ours), so an error S3
        answers (5xx, SlowDown, a refused credential) is the service's trouble, never the
        client's: a 503 with Retry-After, and a log line with S3's own code for ops.
        """

        def call() -> T:
            try:
                return func(*args, **kwargs)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise FileNotFoundError(str(exc)) from None
                raise self._unavailable(exc) from exc
            except (BotoCoreError, Boto3Error) as exc:  # unreachable, timeouts, transfers
                raise self._unavailable(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    @contextmanager
    def _signing(self) -> Iterator[None]:
        """Signing needs credentials (from the AWS chain they may be missing or expired)."""
        try:
            yield
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> Unavailable:
        log.warning("S3 call failed: %s: %s", type(exc).__name__, exc)
        return Unavailable("Storage unavailable, try again shortly", retry_after=self.retry_after)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
