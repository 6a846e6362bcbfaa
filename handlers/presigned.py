"""Presigned uploads: hand out a signed PUT URL, take the PUT (local storage), confirm."""

from __future__ import annotations

import re
from typing import Annotated, Any

import tornado.web
from msgspec import Meta

from mediasvc import metrics
from mediasvc.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.files import EXPIRES_PARAM, SIGNATURE_PARAM, STORAGE_KEY_PARAM
from mediasvc.handlers.idempotent import (
    IDEMPOTENCY_KEY_PARAM,
    REPLAYED_HEADER,
    IdempotentHandler,
    idempotent,
)
from mediasvc.handlers.media import API, MEDIA_ID, MEDIA_ID_PARAM, media_location
from mediasvc.models.base import Binary, Error, UploadContentType, Url
from mediasvc.models.media import Media
from mediasvc.models.uploads import LocalUploadResult, PresignedUpload, PresignedUploadRequest
from mediasvc.openapi import Answer, Header, Operation, Param, PathItem
from mediasvc.records import MediaStatus, StorageKey
from mediasvc.services.idempotency import REPLAY_HEADER
from mediasvc.spool import SpoolWriter
from mediasvc.storage.local import UPLOADS_PREFIX, LocalBlobStore


class PresignedUploadHandler(IdempotentHandler):
    """POST: validate, record a pending media, return the signed PUT URL."""

    idempotency_route = "presigned_upload"
    openapi = PathItem(
        f"{API}/presigned_upload/",
        {
            "post": Operation(
                "presignedUpload",
                "Record a pending media and get a signed PUT URL for its bytes",
                "uploads",
                {
                    201: Answer(
                        "PUT the bytes with upload_headers, then confirm",
                        PresignedUpload,
                        headers={
                            "Location": Header("The pending media", Url, True),
                            REPLAY_HEADER: REPLAYED_HEADER,
                        },
                        links="media_id",
                    )
                },
                errors=(400, 401, 403, 409, 413, 422, 503),
                body=PresignedUploadRequest,
                params=(IDEMPOTENCY_KEY_PARAM,),
            )
        },
    )

    @idempotent
    async def post(self) -> None:
        principal = self.authenticate()
        request = self.decode(PresignedUploadRequest)
        answer = await self.ctx.presigned.create(principal, request, self.base_url)
        self.set_header("Location", media_location(self.base_url, answer.media_id))
        self.write_model(answer, status=201)


class ConfirmUploadHandler(IdempotentHandler):
    """POST: the uploaded object is checked and the media moves on."""

    idempotency_route = "confirm_upload"
    openapi = PathItem(
        f"{API}/{{media_id}}/confirm_upload/",
        {
            "post": Operation(
                "confirmUpload",
                "Check the uploaded object and move the media on (uploader or admin)",
                "uploads",
                {
                    200: Answer(
                        "The media (confirming again changes nothing)",
                        Media,
                        headers={REPLAY_HEADER: REPLAYED_HEADER},
                    ),
                    400: Answer("The object was rejected (the media failed)", Error),
                    409: Answer(
                        "upload not found, or a request with this Idempotency-Key is still "
                        "in progress",
                        Error,
                    ),
                },
                errors=(401, 403, 404, 422, 503),
                params=(IDEMPOTENCY_KEY_PARAM,),
                linked=True,
            )
        },
        params=(MEDIA_ID_PARAM,),
    )

    @idempotent
    async def post(self, media_id: str) -> None:
        media = await self.ctx.presigned.confirm(self.authenticate(), media_id)
        self.write_model(self.ctx.media.present(media, self.base_url))


@tornado.web.stream_request_body
class LocalPutHandler(BaseHandler):
    """PUT to a presigned local URL: streamed to a spool file, then linked into place once.

    The signed URL is the credential. It binds the key, the Content-Type and the exact size,
    expires, and works once: the object is created with a hard link that never replaces.
    """

    openapi = PathItem(
        "/uploads/{key}",
        {
            "put": Operation(
                "putPresignedUpload",
                "The bytes of a presigned upload (local storage; the signed URL is the credential)",
                "files",
                {
                    200: Answer("Stored; now confirm the upload", LocalUploadResult),
                    400: Answer("Wrong Content-Type or size", Error),
                    403: Answer("Invalid or expired upload URL", Error),
                    404: Answer("No upload is expected at this URL", Error),
                    409: Answer("This upload URL was already used", Error),
                },
                errors=(413, 429, 503, 507),
                body=Binary,
                body_media="application/octet-stream",
                body_note="The file's bytes, sent with `Content-Type: <content_type>` (the "
                "`upload_headers` of the presigned answer) or `application/octet-stream`; its "
                "content is checked on confirm.",
                params=(
                    STORAGE_KEY_PARAM,
                    Param(
                        "content_type",
                        "query",
                        UploadContentType,
                        "The body's Content-Type must be exactly this",
                        required=True,
                    ),
                    Param(
                        "size",
                        "query",
                        Annotated[int, Meta(ge=1)],
                        "The body must have exactly this many bytes",
                        required=True,
                    ),
                    EXPIRES_PARAM,
                    SIGNATURE_PARAM,
                ),
                public=True,
            )
        },
    )

    spool: SpoolWriter | None = None
    declared_size = 0
    body_complete = False

    @property
    def body_limit(self) -> int:
        return self.declared_size

    async def prepare(self) -> None:
        self.check_method()  # before the signature: a wrong method is a 405, not a 403
        key = self.path_args[0] if self.path_args else ""
        store = self.ctx.blobs
        assert isinstance(store, LocalBlobStore)
        content_type = self.get_query_argument("content_type", "")
        size = self.get_query_argument("size", "")
        signed = store.upload_allowed(
            key,
            content_type,
            int(size) if re.fullmatch(r"[0-9]{1,15}", size) else -1,
            self.get_query_argument("expires", ""),
            self.get_query_argument("sig", ""),
        )
        if not signed:
            raise Forbidden("Invalid or expired upload URL")
        self.declared_size = int(size)
        await super().prepare()
        await self.take_upload_slot()
        # The signed type, as S3 wants it; or bare bytes, as generated clients send them
        # (the type that counts is the signed one, and the content is sniffed on confirm).
        sent = self.request.headers.get("Content-Type", "").lower()
        if sent not in (content_type, "application/octet-stream"):
            raise BadRequest(f"Content-Type must be {content_type}")
        await self._check_unused(key)
        self.spool = SpoolWriter(self.ctx.settings.spool_path, self.ctx.io_executor)

    async def _check_unused(self, key: str) -> None:
        await self._check_expected(key)
        if await self.ctx.blobs.exists(key):
            raise Conflict("This upload URL was already used")

    async def _check_expected(self, key: str) -> None:
        """404 unless a pending media still waits for this key (it may have been deleted)."""
        parsed = StorageKey.parse(key)
        media = await self.ctx.repository.get(parsed.media_id) if parsed else None
        if media is None or media.storage_key != key:
            raise NotFound("No upload is expected at this URL")
        if media.status is not MediaStatus.PENDING:
            raise Conflict("This upload URL was already used")

    async def data_received(self, chunk: bytes) -> None:
        if self.spool is None or self._finished:
            return
        metrics.UPLOAD_BYTES.labels("presigned").inc(len(chunk))
        if self.spool.size + len(chunk) > self.declared_size:
            self.spool.discard()
            self.refuse(TooLarge(f"Body is larger than the declared {self.declared_size} bytes"))
            return
        try:
            await self.spool.write(chunk)
        except Exception as exc:  # a full disk (507): answer now, keep nothing
            self.spool.discard()
            self.refuse(exc)

    def release_body(self) -> None:
        if self.spool is not None:
            self.spool.discard()

    async def put(self, key: str) -> None:
        spool = self.spool
        assert spool is not None
        self.body_complete = True
        try:
            if spool.size != self.declared_size:
                raise BadRequest(
                    f"Body is {spool.size} bytes, not the declared {self.declared_size}"
                )
            await spool.finish()
            await self._check_expected(key)  # the media may have been deleted meanwhile
            await self._store(key, spool)
        finally:
            spool.discard()
        self.write_model(LocalUploadResult(storage_key=key, size=self.declared_size))

    async def _store(self, key: str, spool: SpoolWriter) -> None:
        """Link the file into place, then look at the record again: a DELETE that removed it
        before our link did not see our file, so we remove it ourselves. (A DELETE after this
        look finds the file and removes it.)"""
        store = self.ctx.blobs
        assert isinstance(store, LocalBlobStore)
        if not await store.put_new_file(key, spool.path):
            raise Conflict("This upload URL was already used")
        try:
            await self._check_expected(key)
        except NotFound:
            await store.delete([key])
            raise

    def on_connection_close(self) -> None:
        if self.spool is not None and not self.body_complete:
            self.spool.discard()
        super().on_connection_close()


def routes_for(store: Any) -> list[Any]:
    """Presign and confirm always; the PUT endpoint only with local storage."""
    routes: list[Any] = [
        (rf"{API}/presigned_upload/?", PresignedUploadHandler),
        (rf"{API}/{MEDIA_ID}/confirm_upload/?", ConfirmUploadHandler),
    ]
    if isinstance(store, LocalBlobStore):
        routes.append((rf"{UPLOADS_PREFIX}(.+)", LocalPutHandler))
    return routes
