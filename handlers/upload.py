"""Direct upload: the multipart body is streamed to a spool file as it arrives."""

from __future__ import annotations

from collections.abc import Awaitable

import tornado.web

from mediasvc import metrics
from mediasvc.auth import Principal
from mediasvc.errors import BadRequest
from mediasvc.handlers.idempotent import IDEMPOTENCY_KEY_PARAM, REPLAYED_HEADER, IdempotentHandler
from mediasvc.handlers.media import API, entity_location, media_location
from mediasvc.models.base import Error, Url
from mediasvc.models.media import Media
from mediasvc.models.uploads import (
    BatchFailure,
    BatchFields,
    BatchResult,
    BatchUploadForm,
    UploadForm,
    UploadFormFields,
)
from mediasvc.openapi import Answer, Header, Operation, PathItem
from mediasvc.services.idempotency import REPLAY_HEADER, form_fingerprint
from mediasvc.upload import MultipartReceiver, boundary_of
from mediasvc.wire import decode_fields

# Received bytes go to the upload-bytes counter in steps of this many (and at the end): in
# multiprocess mode each increment takes a lock and writes a shared file, once per 256 KB
# chunk it was a cost of its own.
METRIC_STEP_BYTES = 4 * 1024 * 1024


@tornado.web.stream_request_body
class UploadHandler(IdempotentHandler):
    """POST /upload/: authenticate before the body, stream it, then store and record."""

    idempotency_route = "upload"
    openapi = PathItem(
        f"{API}/upload/",
        {
            "post": Operation(
                "uploadMedia",
                "Upload one file (multipart, streamed)",
                "uploads",
                {
                    200: Answer(
                        "dedupe=true and the entity already has this content: its media "
                        "(nothing new was stored)",
                        Media,
                        headers={REPLAY_HEADER: REPLAYED_HEADER},
                    ),
                    201: Answer(
                        "Stored and recorded",
                        Media,
                        headers={
                            "Location": Header("The media", Url, True),
                            REPLAY_HEADER: REPLAYED_HEADER,
                        },
                        links="id",
                    ),
                },
                errors=(400, 401, 403, 409, 413, 422, 429, 503, 507),
                body=UploadForm,
                body_media="multipart/form-data",
                params=(IDEMPOTENCY_KEY_PARAM,),
            )
        },
    )

    receiver: MultipartReceiver | None = None
    failed = False
    body_complete = False
    unreported_bytes = 0

    @property
    def body_limit(self) -> int:
        """The largest per-type file limit plus room for the form around it."""
        return self.ctx.settings.largest_upload + self.ctx.settings.max_form_overhead

    upload_kind = "direct"

    async def prepare(self) -> None:
        await super().prepare()
        principal = self.authenticate()
        await self.take_upload_slot()
        boundary = boundary_of(self.request.headers.get("Content-Type"))
        self.receiver = self.make_receiver(boundary, principal)

    def make_receiver(self, boundary: str, principal: Principal) -> MultipartReceiver:
        """One file in the `file` field."""
        return MultipartReceiver(
            boundary,
            self.ctx.settings,
            self.ctx.io_executor,
            before_file=lambda fields: self.ctx.media.check_upload_target(principal, fields),
        )

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        # No coroutine per chunk: one is made only when the receiver has to wait.
        if self.failed or self.receiver is None:
            return None
        self.unreported_bytes += len(chunk)
        if self.unreported_bytes >= METRIC_STEP_BYTES:
            self.report_bytes()
        try:
            pending = self.receiver.feed(chunk)
        except Exception as exc:
            self.give_up(exc)
            return None
        return None if pending is None else self._fed(pending)

    async def _fed(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            self.give_up(exc)

    def give_up(self, exc: Exception) -> None:
        """Answer now: the rest of the body is not read, what was spooled is dropped."""
        self.failed = True
        if self.receiver is not None:
            self.receiver.discard()
        self.refuse(exc)

    def report_bytes(self) -> None:
        """Add the bytes received since the last report to the upload-bytes counter."""
        if self.unreported_bytes:
            metrics.UPLOAD_BYTES.labels(self.upload_kind).inc(self.unreported_bytes)
            self.unreported_bytes = 0

    def on_finish(self) -> None:
        self.report_bytes()
        super().on_finish()

    def release_body(self) -> None:
        self.failed = True
        if self.receiver is not None:
            self.receiver.discard()

    async def post(self) -> None:
        receiver = self.receiver
        assert receiver is not None
        self.body_complete = True  # from here on the request completes even if the client leaves
        self.report_bytes()
        try:
            await receiver.close()
            if self.replayed(lambda: self.form_fingerprint(receiver)):
                return
            if not receiver.files:
                raise BadRequest("No file was submitted in the 'file' field")
            fields = decode_fields(UploadFormFields, receiver.fields, self.ctx.settings)
            media, created = await self.ctx.media.upload(self.principal, fields, receiver.files[0])
        finally:
            receiver.discard()
        if created:
            self.set_header("Location", media_location(self.base_url, media.id))
        self.write_model(self.ctx.media.present(media, self.base_url), 201 if created else 200)

    @staticmethod
    def form_fingerprint(receiver: MultipartReceiver) -> str:
        """The form as received: fields, and each file's name, sha256 and size."""
        files = ((f.raw_filename, f.sha256, f.size) for f in receiver.files)
        return form_fingerprint(receiver.fields, files, receiver.rejected)

    def on_connection_close(self) -> None:
        # The client went away mid-body: drop what was spooled; no record was made.
        if self.receiver is not None and not self.body_complete:
            self.receiver.discard()
        self.report_bytes()
        super().on_connection_close()


@tornado.web.stream_request_body
class BatchUploadHandler(UploadHandler):
    """POST /batch_upload/: `files` repeated; each file is validated and stored on its own."""

    upload_kind = "batch"
    idempotency_route = "batch_upload"
    openapi = PathItem(
        f"{API}/batch_upload/",
        {
            "post": Operation(
                "batchUploadMedia",
                "Upload several files to one entity (multipart)",
                "uploads",
                {
                    200: Answer(
                        "dedupe=true and the entity already had every file that could be "
                        "stored: nothing new was stored",
                        BatchResult,
                        headers={REPLAY_HEADER: REPLAYED_HEADER},
                    ),
                    201: Answer(
                        "At least one file was stored",
                        BatchResult,
                        headers={
                            "Location": Header(
                                "The list of the entity's media, which holds every media created",
                                Url,
                                True,
                            ),
                            REPLAY_HEADER: REPLAYED_HEADER,
                        },
                    ),
                    400: Answer("Invalid form, or no file could be stored", (Error, BatchFailure)),
                },
                errors=(401, 403, 409, 413, 422, 429, 503, 507),
                body=BatchUploadForm,
                body_media="multipart/form-data",
                params=(IDEMPOTENCY_KEY_PARAM,),
            )
        },
    )

    @property
    def body_limit(self) -> int:
        return self.ctx.settings.max_batch_size

    def make_receiver(self, boundary: str, principal: Principal) -> MultipartReceiver:
        return MultipartReceiver(
            boundary,
            self.ctx.settings,
            self.ctx.io_executor,
            file_fields=frozenset({"files"}),
            max_files=self.ctx.settings.max_batch_files,
            before_file=lambda fields: self.ctx.media.check_upload_target(principal, fields),
            per_file_errors=True,
        )

    async def post(self) -> None:
        receiver = self.receiver
        assert receiver is not None
        self.body_complete = True
        try:
            await receiver.close()
            if self.replayed(lambda: self.form_fingerprint(receiver)):
                return
            entity = decode_fields(BatchFields, receiver.fields, self.ctx.settings)
            result = await self.ctx.media.create_batch(
                self.principal, entity, receiver.files, receiver.rejected
            )
        finally:
            receiver.discard()
        if result.created:
            location = entity_location(self.base_url, entity.entity_type, str(entity.entity_id))
            self.set_header("Location", location)
            self.write_model(result, status=201)
        elif result.summary.successful:  # every file that could be stored was there already
            self.write_model(result, status=200)
        else:
            failure = BatchFailure(
                error="No file could be uploaded",
                created=result.created,
                errors=result.errors,
                summary=result.summary,
            )
            self.write_model(failure, status=400)


routes = [(rf"{API}/upload/?", UploadHandler), (rf"{API}/batch_upload/?", BatchUploadHandler)]
