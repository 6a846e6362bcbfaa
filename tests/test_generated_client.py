"""A client generated from the live OpenAPI document works, for every operation.

`openapi-python-client` (pinned in requirements-dev.txt) generates a Python package from
the document the running service serves, without a warning; the test imports the package
and drives every operation it generated through it, as a user of the SDK would: direct,
batch and presigned upload (with its PUT), an upload retried with an Idempotency-Key and one
with dedupe, the check of which contents an entity has, list with filters, read, PATCH, bulk
update, process, set_primary, download and the file behind it, bulk delete, delete, the
webhook admin API (register, list, read, change, rotate, deliveries, redeliver, remove), and the
operations endpoints. The generator runs once for the module (a few seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import pkgutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.client import API, Client
from tests.support.tokens import Caller

PACKAGE = "mediasvc_generated_client"


@dataclass
class Generated:
    """The generated package, and the operations the test has driven."""

    package: ModuleType
    base_url: str
    called: set[str] = field(default_factory=set)

    def model(self, name: str) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.models"), name)

    def operation(self, name: str) -> Any:
        """One generated operation module (such as `uploads.upload_media`), marked as used."""
        self.called.add(name)
        return importlib.import_module(f"{PACKAGE}.api.{name}")

    def operations(self) -> set[str]:
        """Every operation the generator made, as `tag.operation`."""
        api = importlib.import_module(f"{PACKAGE}.api")
        found = set()
        for tag in pkgutil.iter_modules(api.__path__):
            module = importlib.import_module(f"{PACKAGE}.api.{tag.name}")
            found |= {f"{tag.name}.{op.name}" for op in pkgutil.iter_modules(module.__path__)}
        return found

    def client(self, token: str | None = None) -> Any:
        if token is None:
            return self.package.Client(base_url=self.base_url, raise_on_unexpected_status=True)
        return self.package.AuthenticatedClient(
            base_url=self.base_url, token=token, raise_on_unexpected_status=True
        )


@pytest.fixture(scope="module")
async def generated(
    client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Generated]:
    folder = tmp_path_factory.mktemp("generated")
    bin_dir = Path(sys.executable).parent
    # tus bodies are raw bytes: generated like application/octet-stream, sent as tus wants
    config = folder / "config.yaml"
    config.write_text(
        "content_type_overrides:\n  application/offset+octet-stream: application/octet-stream\n"
    )
    process = await asyncio.create_subprocess_exec(
        str(bin_dir / "openapi-python-client"), "generate",
        "--url", f"{client.base}{API}/openapi.json",
        "--meta", "none", "--output-path", str(folder / PACKAGE), "--config", str(config),
        cwd=folder, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(folder)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode()
    assert process.returncode == 0, text
    assert text.strip() == f"Generating {folder / PACKAGE}", text  # no warning at all
    sys.path.insert(0, str(folder))
    try:
        yield Generated(importlib.import_module(PACKAGE), client.base)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _file(name: str, content: bytes, mime: str) -> Any:
    from mediasvc_generated_client.types import File

    return File(payload=BytesIO(content), file_name=name, mime_type=mime)


async def _settled(gen: Generated, sdk: Any, media_id: uuid.UUID) -> Any:
    get_media = gen.operation("media.get_media")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        media = await get_media.asyncio(media_id, client=sdk)
        if media.status.value in ("ready", "failed"):
            return media
        await asyncio.sleep(0.1)
    raise AssertionError(f"media {media_id} did not settle")


def _signed(url: str) -> tuple[str, dict[str, str]]:
    """The storage key (path) and the query of a signed local-storage URL."""
    parts = urlsplit(url)
    key = parts.path.split("/", 2)[2]
    return key, {name: values[0] for name, values in parse_qs(parts.query).items()}


async def _upload_all_ways(gen: Generated, sdk: Any, owner: Caller, samples: Any) -> list[Any]:
    """Direct, batch and presigned (with its PUT and confirm): four media of `owner`."""
    entity = {"entity_type": "user", "entity_id": uuid.UUID(owner.sub)}
    form = gen.model("UploadForm")(
        file=_file("photo.jpg", samples["jpg"], "image/jpeg"), title="Photo",
        display_order=2, is_primary=False, **entity,
    )  # fmt: skip
    direct = await gen.operation("uploads.upload_media").asyncio_detailed(client=sdk, body=form)
    assert direct.status_code == 201, direct.content
    assert direct.headers["Location"] == f"{gen.base_url}{API}/{direct.parsed.id}/"
    assert (direct.parsed.title, direct.parsed.display_order) == ("Photo", 2)

    batch_form = gen.model("BatchUploadForm")(
        files=[_file("menu.pdf", samples["pdf"], "application/pdf"),
               _file("notes.txt", samples["txt"], "text/plain")],
        **entity,
    )  # fmt: skip
    batch = await gen.operation("uploads.batch_upload_media").asyncio_detailed(
        client=sdk, body=batch_form
    )
    assert batch.status_code == 201, batch.content
    assert batch.parsed.summary.successful == 2 and batch.parsed.errors == []

    content = samples["png"]
    request = gen.model("PresignedUploadRequest")(
        filename="drawing.png", file_size=len(content), title="Drawn",
        content_type=gen.model("PresignedUploadRequestContentType")("image/png"), **entity,
    )  # fmt: skip
    presigned = await gen.operation("uploads.presigned_upload").asyncio_detailed(
        client=sdk, body=request
    )
    assert presigned.status_code == 201, presigned.content
    answer = presigned.parsed
    assert presigned.headers["Location"] == f"{gen.base_url}{API}/{answer.media_id}/"
    key, query = _signed(answer.upload_url)
    # Synchronous, in a thread: httpx's async client cannot send the file object the
    # generated code passes on (and the server runs on this event loop).
    put_presigned_upload = gen.operation("files.put_presigned_upload")

    def put_bytes() -> Any:
        with gen.client() as anyone:  # the signed URL is the credential
            return put_presigned_upload.sync_detailed(
                key, client=anyone, body=_file("drawing.png", content, "image/png"),
                content_type=gen.model("PutPresignedUploadContentType")(query["content_type"]),
                size=int(query["size"]), expires=int(query["expires"]), sig=query["sig"],
            )  # fmt: skip

    put = await asyncio.to_thread(put_bytes)
    assert put.status_code == 200, put.content
    assert (put.parsed.storage_key, put.parsed.size) == (answer.storage_key, len(content))
    confirmed = await gen.operation("uploads.confirm_upload").asyncio(answer.media_id, client=sdk)
    assert confirmed.title == "Drawn" and confirmed.status.value == "processing"
    created = [direct.parsed.id, *(c.id for c in batch.parsed.created), answer.media_id]
    return [await _settled(gen, sdk, media_id) for media_id in created]


async def _keyed_and_deduplicated(
    gen: Generated, sdk: Any, owner: Caller, photo: Any, samples: Any
) -> None:
    """An upload with an Idempotency-Key sent twice (the second is the kept answer), one with
    dedupe=true of content the entity has, and a check of which contents it has."""
    upload = gen.operation("uploads.upload_media")
    entity = {"entity_type": "user", "entity_id": uuid.UUID(owner.sub)}
    answers = []
    for _ in range(2):
        form = gen.model("UploadForm")(file=_file("k.txt", b"keyed\n", "text/plain"), **entity)
        answers.append(await upload.asyncio_detailed(client=sdk, body=form, idempotency_key="k1"))
    first, again = answers
    assert (first.status_code, again.status_code) == (201, 201), again.content
    assert again.headers["Idempotent-Replayed"] == "true" and again.parsed.id == first.parsed.id
    form = gen.model("UploadForm")(
        file=_file("same.jpg", samples["jpg"], "image/jpeg"), dedupe=True, **entity
    )
    deduplicated = await upload.asyncio_detailed(client=sdk, body=form)
    assert deduplicated.status_code == 200 and deduplicated.parsed.id == photo.id
    content = gen.model("ContentRef")
    files = [
        content(sha256=hashlib.sha256(samples["jpg"]).hexdigest(), size=len(samples["jpg"])),
        content(sha256="0" * 64, size=1),
    ]
    body = gen.model("CheckRequest")(files=files, **entity)
    checked = await gen.operation("uploads.check_media").asyncio(client=sdk, body=body)
    assert [str(result.id) if result.id else None for result in checked.results] == [
        str(photo.id),
        None,
    ]
    removed = await gen.operation("media.delete_media").asyncio_detailed(
        first.parsed.id, client=sdk
    )
    assert removed.status_code == 204


async def _read_and_change(gen: Generated, sdk: Any, owner: Caller, media: list[Any]) -> None:
    photo, pdf, txt, png = media
    listing = gen.operation("media.list_media")
    images = await listing.asyncio(
        client=sdk, entity_type="user", entity_id=uuid.UUID(owner.sub),
        media_type=gen.model("ListMediaMediaType")("image"),
        status=gen.model("MediaStatus")("ready"), limit=1, offset=0,
    )  # fmt: skip
    assert images.count == 2 and len(images.results) == 1 and images.next_ is not None
    found = await listing.asyncio(client=sdk, entity_id=uuid.UUID(owner.sub), search="drawing")
    assert [m.id for m in found.results] == [png.id]

    read = await gen.operation("media.get_media").asyncio(photo.id, client=sdk)
    assert read.view_count == photo.view_count + 1
    changes = gen.model("MediaUpdate")(title="Renamed", alt_text="A photo", display_order=1)
    patched = await gen.operation("media.update_media").asyncio(photo.id, client=sdk, body=changes)
    assert (patched.title, patched.alt_text, patched.display_order) == ("Renamed", "A photo", 1)

    bulk = gen.model("BulkUpdateRequest")(
        media_ids=[str(pdf.id), str(txt.id)],
        updates=gen.model("MediaChanges")(description="Shared"),
    )
    updated = await gen.operation("media.bulk_update_media").asyncio(client=sdk, body=bulk)
    assert (updated.updated, updated.failed) == (2, [])

    primary = await gen.operation("media.set_primary_media").asyncio(png.id, client=sdk)
    assert primary.is_primary


async def _process(gen: Generated, sdk: Any, photo: Any) -> None:
    """The spec's example, typed: thumbnail and optimize within an 800x600 box."""
    operation = gen.model("ProcessRequestOperationsItem")
    body = gen.model("ProcessRequest")(
        operations=[operation("thumbnail"), operation("optimize")],
        options=gen.model("ProcessOptions")(resize=gen.model("ResizeBox")(width=800, height=600)),
    )
    queued = await gen.operation("media.process_media").asyncio_detailed(
        photo.id, client=sdk, body=body
    )
    assert queued.status_code == 202, queued.content
    job = queued.parsed.job
    assert [op.value for op in job.operations] == ["thumbnail", "optimize"]
    assert (job.options.resize.width, job.options.resize.height) == (800, 600)
    assert (await _settled(gen, sdk, photo.id)).status.value == "ready"


async def _download(gen: Generated, sdk: Any, anyone: Any, photo: Any, content: bytes) -> None:
    redirect = await gen.operation("media.download_media").asyncio_detailed(photo.id, client=sdk)
    assert redirect.status_code == 302
    key, query = _signed(redirect.headers["Location"])
    signed = {"expires": int(query["expires"]), "sig": query["sig"]}
    file = await gen.operation("files.get_file").asyncio_detailed(key, client=anyone, **signed)
    assert file.status_code == 200 and file.parsed.payload.read() == content
    head = await gen.operation("files.head_file").asyncio_detailed(key, client=anyone, **signed)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(content))


async def _delete(gen: Generated, sdk: Any, media: list[Any]) -> None:
    photo, *others = media
    ids = [str(m.id) for m in others]
    deleted = await gen.operation("media.bulk_delete_media").asyncio(
        client=sdk, body=gen.model("BulkDeleteRequest")(media_ids=ids)
    )
    assert (deleted.deleted, deleted.failed) == (len(ids), [])
    gone = await gen.operation("media.delete_media").asyncio_detailed(photo.id, client=sdk)
    assert gone.status_code == 204
    missing = await gen.operation("media.get_media").asyncio_detailed(photo.id, client=sdk)
    assert missing.status_code == 404 and missing.parsed.error == "Media not found"


async def _operations_endpoints(gen: Generated, anyone: Any) -> None:
    assert (await gen.operation("operations.health").asyncio(client=anyone)).status == "ok"
    ready = await gen.operation("operations.readiness").asyncio(client=anyone)
    assert ready.status == "ready" and ready.checks.storage.value == "ok"
    metrics = await gen.operation("operations.metrics").asyncio(client=anyone)
    assert "# TYPE" in metrics
    document = await gen.operation("operations.get_open_api").asyncio(client=anyone)
    assert document.additional_properties["openapi"] == "3.1.0"


async def _tus(gen: Generated, sdk: Any, anyone: Any, user: Caller) -> None:
    """A resumable upload through the SDK: discover, create, append, look, terminate."""
    import base64

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    found = await gen.operation("tus.tus_options").asyncio_detailed(client=anyone)
    assert found.status_code == 204 and found.headers["Tus-Version"] == "1.0.0"
    fields = f"filename {b64('a.txt')},entity_type {b64('user')},entity_id {b64(user.sub)}"
    created = await gen.operation("tus.tus_create").asyncio_detailed(
        client=sdk, tus_resumable="1.0.0", upload_length="6", upload_metadata=fields
    )
    assert created.status_code == 201, created.content
    upload_id = uuid.UUID(created.headers["Location"].rsplit("/", 1)[-1])
    more = await gen.operation("tus.tus_upload_options").asyncio_detailed(upload_id, client=anyone)
    assert more.status_code == 204
    body = _file("a.txt", b"hello\n", "application/offset+octet-stream")
    tus_patch = gen.operation("tus.tus_patch")

    def patch_bytes() -> Any:  # in a thread, as the presigned PUT (a file object body)
        with gen.client(user.token) as client:
            return tus_patch.sync_detailed(
                upload_id, client=client, body=body, tus_resumable="1.0.0", upload_offset=0
            )

    sent = await asyncio.to_thread(patch_bytes)
    assert sent.status_code == 204 and sent.headers["Upload-Offset"] == "6"
    seen = await gen.operation("tus.tus_head").asyncio_detailed(
        upload_id, client=sdk, tus_resumable="1.0.0"
    )
    assert seen.status_code == 200 and seen.headers["Upload-Offset"] == "6"
    ended = await gen.operation("tus.tus_terminate").asyncio_detailed(
        upload_id, client=sdk, tus_resumable="1.0.0"
    )
    assert ended.status_code == 204


async def _webhooks(gen: Generated, root: Any, sdk: Any, user: Caller) -> None:
    """An endpoint's life (this service sends nothing: its deliveries stay pending)."""
    event = gen.model("WebhookCreateEventsItem")
    body = gen.model("WebhookCreate")(
        url="https://hooks.example.com/media", events=[event("media.created")], description="SDK"
    )
    created = await gen.operation("webhooks.create_webhook").asyncio_detailed(
        client=root, body=body
    )
    assert created.status_code == 201, created.content
    endpoint = created.parsed
    assert endpoint.secret.startswith("whsec_") and created.headers["Location"].endswith(
        f"/webhooks/{endpoint.id}/"
    )
    listed = await gen.operation("webhooks.list_webhooks").asyncio(client=root)
    assert endpoint.id in [w.id for w in listed.results]
    read = await gen.operation("webhooks.get_webhook").asyncio(endpoint.id, client=root)
    assert read.description == "SDK"
    change = gen.model("WebhookUpdate")(description="Changed")
    changed = await gen.operation("webhooks.update_webhook").asyncio(
        endpoint.id, client=root, body=change
    )
    assert changed.description == "Changed"
    rotated = await gen.operation("webhooks.rotate_webhook_secret").asyncio(
        endpoint.id, client=root
    )
    assert rotated.secret != endpoint.secret

    form = gen.model("UploadForm")(
        file=_file("hook.txt", b"hooked\n", "text/plain"),
        entity_type="user", entity_id=uuid.UUID(user.sub),
    )  # fmt: skip
    assert (
        await gen.operation("uploads.upload_media").asyncio_detailed(client=sdk, body=form)
    ).status_code == 201
    list_deliveries = gen.operation("webhooks.list_webhook_deliveries")
    deadline = time.monotonic() + 20
    while not (page := await list_deliveries.asyncio(endpoint.id, client=root, limit=10)).results:
        assert time.monotonic() < deadline, "no delivery was made"
        await asyncio.sleep(0.1)
    delivery = page.results[0]
    assert delivery.event_type.value == "media.created" and delivery.state.value == "pending"
    again = await gen.operation("webhooks.redeliver_webhook_delivery").asyncio_detailed(
        endpoint.id, delivery.id, client=root
    )
    assert again.status_code == 202 and again.parsed.event_id == delivery.event_id
    gone = await gen.operation("webhooks.delete_webhook").asyncio_detailed(endpoint.id, client=root)
    assert gone.status_code == 204


async def test_every_generated_operation_works(
    generated: Generated, user: Caller, admin: Caller, samples: dict[str, bytes]
) -> None:
    async with (
        generated.client(user.token) as sdk,
        generated.client(admin.token) as root,
        generated.client() as anyone,
    ):
        media = await _upload_all_ways(generated, sdk, user, samples)
        await _keyed_and_deduplicated(generated, sdk, user, media[0], samples)
        await _read_and_change(generated, sdk, user, media)
        await _process(generated, sdk, media[0])
        await _download(generated, sdk, anyone, media[0], samples["jpg"])
        await _delete(generated, sdk, media)
        await _webhooks(generated, root, sdk, user)
        await _operations_endpoints(generated, anyone)
        await _tus(generated, sdk, anyone, user)
    assert generated.called == generated.operations()  # nothing generated was left out


async def test_generated_models_take_integral_floats(
    generated: Generated, user: Caller, client: Client
) -> None:
    """What a JavaScript client sends for an integer (`800.0` is `800` to it) is accepted by
    the server and read back by the generated models as the int it is."""
    entity = {"entity_type": "user", "entity_id": user.sub}
    created = await client.request(
        "POST", f"{API}/presigned_upload/", token=user.token,
        json_body={"filename": "n.txt", "content_type": "text/plain", "file_size": 4.0,
                   **entity},
    )  # fmt: skip
    assert created.status == 201, created.body
    answer = generated.model("PresignedUpload").from_dict(created.json)
    patched = await client.request(
        "PATCH", f"{API}/{answer.media_id}/", token=user.token,
        json_body={"display_order": 800.0},
    )  # fmt: skip
    media = generated.model("Media").from_dict(patched.json)
    assert media.display_order == 800 and isinstance(media.display_order, int)
