"""The local-folder blob store. Files are served by the service itself under signed URLs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from mediasvc.errors import Unavailable, full_disk_is_507
from mediasvc.storage import BlobStore, PresignedUpload

log = logging.getLogger(__name__)
FILES_PREFIX = "/files/"
UPLOADS_PREFIX = "/uploads/"
COPY_CHUNK = 1024 * 1024
T = TypeVar("T")


class UrlSigner:
    """HMAC signatures for expiring file URLs, so knowing a key is not enough to fetch it."""

    def __init__(self, secret: str, ttl: int) -> None:
        self._secret = secret.encode()
        self.ttl = ttl

    def signature(self, key: str, expires: int) -> str:
        """The signature of `key` valid until the Unix time `expires`."""
        digest = hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def query(self, key: str, now: float | None = None) -> str:
        """`expires=...&sig=...`; the expiry is rounded up so URLs stay cacheable for a while."""
        step = max(1, self.ttl // 4)
        moment = int(now if now is not None else time.time())
        expires = moment + self.ttl + step - (moment % step)
        return f"expires={expires}&sig={self.signature(key, expires)}"

    def valid(self, key: str, expires: str, signature: str, now: float | None = None) -> bool:
        """Whether a signature is right and not expired."""
        if not re.fullmatch(r"[0-9]{1,12}", expires):
            return False
        if int(expires) < (now if now is not None else time.time()):
            return False
        expected = self.signature(key, int(expires)).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class LocalBlobStore(BlobStore):
    """A folder on disk; blocking file-system calls run in the I/O thread pool."""

    def __init__(
        self, root: Path, signer: UrlSigner, executor: Executor, retry_after: int = 2
    ) -> None:
        self.root = root
        self.signer = signer
        self.retry_after = retry_after
        self._executor = executor
        root.mkdir(parents=True, exist_ok=True)
        self._real_root = str(root.resolve())  # once: path_of runs for every stored file

    def path_of(self, key: str) -> Path:
        """The file of a key; refuses keys that would leave the root.

        Keys are made by the server; the check is on the path as written ('..', an absolute
        key), so it costs no walk of the file system per call (resolving took a tenth of a
        millisecond, on the event loop). A link placed inside the store is followed.
        """
        path = os.path.normpath(os.path.join(self._real_root, key))
        if not path.startswith(self._real_root + os.sep):
            raise ValueError(f"storage key outside the store: {key!r}")
        return Path(path)

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await self._store(self._move_into_place, path, self.path_of(key))

    async def delete(self, keys: Iterable[str]) -> None:
        await self._run(self._delete_files, [self.path_of(k) for k in keys])

    async def size_of(self, key: str) -> int | None:
        return await self._run(_file_size, self.path_of(key))

    async def read_head(self, key: str, length: int) -> bytes:
        return await self._run(_read_head, self.path_of(key), length)

    async def digest(self, key: str) -> str:
        return await self._run(_sha256_of, self.path_of(key))

    async def put_new_file(self, key: str, path: Path) -> bool:
        """Like put_file, but never replaces an existing object; False if one exists."""
        return await self._store(self._link_into_place, path, self.path_of(key))

    def presign_upload(
        self, key: str, content_type: str, size: int, ttl: int, base_url: str
    ) -> PresignedUpload:
        expires = int(time.time()) + ttl
        query = urlencode(
            {
                "content_type": content_type,
                "size": size,
                "expires": expires,
                "sig": self.signer.signature(_upload_claim(key, content_type, size), expires),
            }
        )
        url = f"{base_url}{UPLOADS_PREFIX}{quote(key)}?{query}"
        return PresignedUpload(url, {"Content-Type": content_type}, expires)

    def upload_allowed(
        self, key: str, content_type: str, size: int, expires: str, sig: str
    ) -> bool:
        """Whether a presigned PUT's parameters are the ones we signed, and not expired."""
        return self.signer.valid(_upload_claim(key, content_type, size), expires, sig)

    async def local_copy(self, key: str, work_dir: Path) -> Path:
        # Workers read the stored file in place: it never changes once stored.
        return self.path_of(key)

    def url(self, key: str, base_url: str) -> str:
        return f"{base_url}{FILES_PREFIX}{quote(key)}?{self.signer.query(key)}"

    async def check(self) -> None:
        await self._run(os.statvfs, self.root)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def _store(self, func: Callable[..., T], source: Path, target: Path) -> T:
        """Store a file; a folder that refuses it (read-only, I/O errors) is a 503, like S3
        failing; a full one is a 507 (raised inside)."""
        try:
            return await self._run(func, source, target)
        except OSError as exc:
            log.error("could not store %s: %s", target, exc)
            raise Unavailable(
                "Storage unavailable, try again shortly", retry_after=self.retry_after
            ) from exc

    @staticmethod
    def _move_into_place(source: Path, target: Path) -> None:
        # fsync the data, rename atomically, then fsync the folder: after this a crash
        # cannot leave a record pointing at a missing or half-written file.
        with full_disk_is_507("a stored file"):
            target.parent.mkdir(parents=True, exist_ok=True)
            with _same_device(source, target.parent) as local:
                os.replace(local, target)
            _fsync_dir(target.parent)

    @staticmethod
    def _link_into_place(source: Path, target: Path) -> bool:
        try:
            with full_disk_is_507("a stored file"):
                target.parent.mkdir(parents=True, exist_ok=True)
                with _same_device(source, target.parent) as local:
                    os.link(local, target)  # fails if the target exists: one upload per URL
                _fsync_dir(target.parent)
        except FileExistsError:
            return False
        finally:
            source.unlink(missing_ok=True)
        return True

    @staticmethod
    def _delete_files(paths: list[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def _same_device(source: Path, folder: Path) -> Iterator[Path]:
    """`source`, fsynced, as a file on the file system of `folder`, for a rename or link.
    This is the one fsync of an upload's bytes (the spool writer leaves it to the store).

    The spool folder is usually beside the store; when it is not (a fast local disk for
    spooling, the store elsewhere), the bytes are copied into a temporary file in `folder`
    first, which is removed if anything fails: a full store keeps no partial file.
    """
    if os.stat(source).st_dev == os.stat(folder).st_dev:
        with open(source, "rb") as handle:
            os.fsync(handle.fileno())
        yield source
        return
    fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    copy = Path(name)
    try:
        with open(source, "rb") as reader, os.fdopen(fd, "wb") as writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
            writer.flush()
            os.fsync(writer.fileno())
        yield copy
        source.unlink(missing_ok=True)
    finally:
        copy.unlink(missing_ok=True)


def _upload_claim(key: str, content_type: str, size: int) -> str:
    return f"PUT {key} {content_type} {size}"


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def _read_head(path: Path, length: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(length)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
