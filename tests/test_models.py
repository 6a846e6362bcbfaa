"""The wire models: decoding in the field's own words, integral floats as integers, and limits
that are settings both enforced and advertised with the running server's values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mediasvc.app import start_service
from mediasvc.errors import BadRequest
from mediasvc.models.media import MediaUpdate, ProcessRequest
from mediasvc.models.uploads import UploadFields
from mediasvc.settings import MB, Settings, load_settings
from mediasvc.wire import decode_fields, decode_json
from tests.support.client import API, Client
from tests.support.service import service_settings
from tests.support.tokens import Caller

# What an operator sets; the server started with it must say and do the same.
LIMITS = {
    "MEDIASVC_MAX_IMAGE_SIZE": "20MB",
    "MEDIASVC_MAX_TITLE_LENGTH": "40",
    "MEDIASVC_MAX_DISPLAY_ORDER": "99",
}


@pytest.fixture(scope="module")
async def limited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    """A server of its own, started with the LIMITS of the environment."""
    chosen = load_settings(environ=LIMITS)
    settings = service_settings(
        tmp_path_factory.mktemp("limited"),
        max_image_size=chosen.max_image_size,
        max_title_length=chosen.max_title_length,
        max_display_order=chosen.max_display_order,
        processing_enabled=False,
        sweep_interval=0,
    )
    service = await start_service(settings)
    yield Client(f"http://127.0.0.1:{service.port}")
    await service.stop()


def _decode(model: type[Any], body: Any) -> Any:
    return decode_json(model, json.dumps(body).encode(), Settings())


def _refusal(model: type[Any], body: Any) -> str:
    with pytest.raises(BadRequest) as refused:
        _decode(model, body)
    return refused.value.message


def test_integral_floats_decode_as_integers() -> None:
    """msgspec is strict (`3.0` is no int to it); JSON Schema and JavaScript count it as one."""
    patch = _decode(MediaUpdate, {"display_order": 3.0})
    assert patch.display_order == 3 and type(patch.display_order) is int
    box = _decode(ProcessRequest, {"operations": ["resize"], "options": {"resize": {
        "width": 32.0, "height": 3.2e1}}}).options.resize  # fmt: skip
    assert (box.width, box.height) == (32, 32) and type(box.width) is int
    assert _refusal(MediaUpdate, {"display_order": 1.5}) == "display_order must be an integer"
    assert _refusal(MediaUpdate, {"display_order": True}) == "display_order must be an integer"


def test_texts_refuse_nul_and_invalid_unicode() -> None:
    assert _refusal(MediaUpdate, {"title": "a\x00b"}) == "title must not contain NUL characters"
    with pytest.raises(BadRequest, match=r"^title is not valid Unicode$"):
        decode_json(MediaUpdate, b'{"title": "\\udc00"}', Settings())


def test_nested_and_listed_fields_are_named() -> None:
    resize = {"operations": ["resize"], "options": {"resize": {"width": 0, "height": 1}}}
    assert _refusal(ProcessRequest, resize) == (
        "options.resize.width must be an integer from 1 to 8192"
    )
    assert _refusal(ProcessRequest, {"operations": ["blur"]}) == "Unknown operation 'blur'"
    assert _refusal(ProcessRequest, {"operations": ["resize"], "options": {"crop": 1}}) == (
        "Unknown field 'crop'"
    )


def test_form_fields_are_parsed_from_text() -> None:
    entity = {"entity_type": "user", "entity_id": "123E4567-E89B-12D3-A456-426614174000"}
    fields = decode_fields(
        UploadFields, {**entity, "display_order": "2.0", "is_primary": "yes"}, Settings()
    )
    assert (fields.display_order, fields.is_primary) == (2, True)
    assert str(fields.entity_id) == "123e4567-e89b-12d3-a456-426614174000"
    with pytest.raises(BadRequest, match=r"^display_order must be an integer$"):
        decode_fields(UploadFields, {**entity, "display_order": "2.5"}, Settings())
    with pytest.raises(BadRequest, match=r"^entity_type is required$"):
        decode_fields(UploadFields, {"entity_id": entity["entity_id"]}, Settings())


async def _document(client: Client) -> dict[str, Any]:
    document: dict[str, Any] = (await client.request("GET", f"{API}/openapi.json")).json
    return document


async def test_the_document_shows_the_running_limits(client: Client, limited: Client) -> None:
    """The default server and one started with other limits each advertise their own."""
    for server, image_mb, title, order in ((client, 10, 255, 1_000_000), (limited, 20, 40, 99)):
        schemas = (await _document(server))["components"]["schemas"]
        for model in ("MediaUpdate", "MediaChanges", "UploadForm", "PresignedUploadRequest"):
            assert schemas[model]["properties"]["title"]["maxLength"] == title, model
        assert schemas["MediaUpdate"]["properties"]["display_order"]["maximum"] == order
        presigned = schemas["PresignedUploadRequest"]
        assert f"| jpg, jpeg | image | image/jpeg | {image_mb} MB |" in presigned["description"]
        assert presigned["properties"]["file_size"]["maximum"] == 500 * MB  # the largest type
    text = json.dumps(await _document(limited))
    assert "x-setting" not in text and "\\\\Z" not in text  # markers are the builder's only


async def test_the_running_limits_are_enforced(limited: Client, user: Caller) -> None:
    presign = {"filename": "big.jpg", "content_type": "image/jpeg", **user.entity}
    created = await limited.request(
        "POST", f"{API}/presigned_upload/", token=user.token,
        json_body={**presign, "file_size": 15 * MB, "title": "t" * 40},
    )  # fmt: skip
    assert created.status == 201, created.body  # over the default 10 MB, within 20 MB
    too_big = await limited.request(
        "POST", f"{API}/presigned_upload/", token=user.token,
        json_body={**presign, "file_size": 21 * MB},
    )  # fmt: skip
    assert (too_big.status, too_big.json) == (
        413, {"error": "File size exceeds maximum allowed size of 20.0MB for image files"}
    )  # fmt: skip
    path = f"{API}/{created.json['media_id']}/"
    for body, error in (
        ({"title": "t" * 41}, "title must be at most 40 characters"),
        ({"display_order": 100}, "display_order must be between 0 and 99"),
    ):
        refused = await limited.request("PATCH", path, token=user.token, json_body=body)
        assert (refused.status, refused.json) == (400, {"error": error})
    accepted = await limited.request(
        "PATCH", path, token=user.token, json_body={"display_order": 99}
    )
    assert accepted.status == 200 and accepted.json["display_order"] == 99
