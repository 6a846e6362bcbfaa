"""Answers a client reads as the spec means them: the spec's own process example, integers
sent as integral floats (JSON Schema's integers, JavaScript's numbers), `Location` on 201."""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.client import API, Client, multipart_body
from tests.support.media import Uploader, settled
from tests.support.tokens import Caller

SPEC_PROCESS_EXAMPLE = {
    "operations": ["thumbnail", "optimize"],
    "options": {"resize": {"width": 800, "height": 600}},
}


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 2000x1500 camera-sized JPEG, made by ffmpeg."""
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=2000x1500:rate=1", "-frames:v", "1", "-q:v", "2", str(path)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return path.read_bytes()


async def _process(client: Client, caller: Caller, media_id: str, body: Any) -> Any:
    return await client.request(
        "POST", f"{API}/{media_id}/process/", token=caller.token, json_body=body
    )


async def test_the_spec_process_example_is_accepted_as_written(
    client: Client, user: Caller, photo: bytes, upload_media: Uploader
) -> None:
    """`options.resize` beside `optimize` (no `resize` operation): the box is kept in the job
    for the optimized copy to fit inside; the job runs."""
    media = await settled(client, user.token, (await upload_media(user, "photo.jpg", photo))["id"])
    response = await _process(client, user, media["id"], SPEC_PROCESS_EXAMPLE)
    assert response.status == 202, response.body
    job = response.json["job"]
    assert job["operations"] == ["thumbnail", "optimize"]
    assert job["options"] == {"resize": {"width": 800, "height": 600}}
    done = await settled(client, user.token, media["id"])
    assert done["status"] == "ready", done["error"]
    assert done["job"]["options"] == {"resize": {"width": 800, "height": 600}}
    assert {"thumbnail", "optimized"} <= {v["name"] for v in done["variants"]}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"operations": ["thumbnail"], "options": {"resize": {"width": 10, "height": 10}}},
            "options.resize is for the resize and optimize operations",
        ),
        (
            {"operations": ["optimize"], "options": {"resize": {"width": 0.5, "height": 10}}},
            "options.resize.width must be an integer from 1 to 8192",
        ),
        (
            {"operations": ["optimize"], "options": {"resize": {"width": 800}}},
            'options.resize must be {"width": <int>, "height": <int>}',
        ),
    ],
)
async def test_a_resize_box_that_cannot_apply_is_400(
    client: Client, user: Caller, body: Any, error: str, upload_media: Uploader
) -> None:
    media = await upload_media(user, "photo.jpg")
    response = await _process(client, user, media["id"], body)
    assert (response.status, response.json) == (400, {"error": error})


async def test_integral_floats_are_integers_in_json_bodies(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    """800.0 is the integer 800 to JSON Schema and to JavaScript: accepted and stored as an
    int; 0.5 and true are not integers."""
    media = await settled(client, user.token, (await upload_media(user, "photo.jpg"))["id"])
    path = f"{API}/{media['id']}/"
    patched = await client.request(
        "PATCH", path, token=user.token, json_body={"display_order": 3.0}
    )
    assert patched.status == 200, patched.body
    assert b'"display_order":3,' in patched.body  # an int again, not 3.0
    for bad in (0.5, True, "3"):
        refused = await client.request(
            "PATCH", path, token=user.token, json_body={"display_order": bad}
        )
        assert refused.json == {"error": "display_order must be an integer"}, bad
    bulk = await client.request(
        "POST", f"{API}/bulk_update/", token=user.token,
        json_body={"media_ids": [media["id"]], "updates": {"display_order": 2.0}},
    )  # fmt: skip
    assert bulk.json == {"updated": 1, "failed": []}
    body = {"operations": ["resize"], "options": {"resize": {"width": 32.0, "height": 3.2e1}}}
    processed = await _process(client, user, media["id"], body)
    assert processed.status == 202, processed.body
    assert processed.json["job"]["options"] == {"resize": {"width": 32, "height": 32}}
    assert b'"width":32,' in processed.body
    done = await settled(client, user.token, media["id"])
    assert "resize-32x32" in {v["name"] for v in done["variants"]}
    assert done["display_order"] == 2


async def test_integral_float_file_size_in_a_presigned_upload(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    content = samples["png"]
    request = {
        "filename": "p.png", "content_type": "image/png", **user.entity,
        "file_size": float(len(content)),
    }  # fmt: skip
    created = await client.request(
        "POST", f"{API}/presigned_upload/", token=user.token, json_body=request
    )
    assert created.status == 201, created.body
    assert parse_qs(urlsplit(created.json["upload_url"]).query)["size"] == [str(len(content))]
    put = await client.request(
        "PUT", created.json["upload_url"], body=content, headers=created.json["upload_headers"]
    )
    assert put.status == 200, put.body
    confirmed = await client.request(
        "POST", f"{API}/{created.json['media_id']}/confirm_upload/", token=user.token
    )
    assert confirmed.status == 200 and confirmed.json["file_size"] == len(content)
    half = await client.request(
        "POST", f"{API}/presigned_upload/", token=user.token,
        json_body={**request, "file_size": len(content) + 0.5},
    )  # fmt: skip
    assert half.json == {"error": "file_size must be a positive integer"}


async def test_integral_numbers_in_forms_and_queries(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    """A client that formats every number as a float (`2.0`) is understood in form fields
    and query parameters too."""
    media = await upload_media(user, "photo.jpg", display_order="2.0")
    assert media["display_order"] == 2
    await upload_media(user, "photo.jpg")
    listing = await client.request(
        "GET", f"{API}/?entity_id={user.sub}&limit=1.0&offset=1.0", token=user.token
    )
    assert listing.status == 200, listing.body
    assert listing.json["count"] == 2 and len(listing.json["results"]) == 1
    refused = await client.request("GET", f"{API}/?limit=1.5", token=user.token)
    assert refused.json == {"error": "limit must be an integer"}


async def test_every_201_has_a_location(
    client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    """Upload and presigned upload: the media created. Batch upload: the list of the entity's
    media, the one URL that holds every media the batch created."""
    direct = await client.upload(user.token, "a.pdf", samples["pdf"], user.entity)
    assert direct.status == 201
    assert direct.headers["Location"] == f"{client.base}{API}/{direct.json['id']}/"
    read = await client.request("GET", direct.headers["Location"], token=user.token)
    assert read.status == 200 and read.json["id"] == direct.json["id"]

    presigned = await client.request(
        "POST", f"{API}/presigned_upload/", token=user.token,
        json_body={"filename": "n.txt", "content_type": "text/plain", **user.entity,
                   "file_size": 5},
    )  # fmt: skip
    assert presigned.status == 201
    assert presigned.headers["Location"] == f"{client.base}{API}/{presigned.json['media_id']}/"
    pending = await client.request("GET", presigned.headers["Location"], token=user.token)
    assert pending.json["status"] == "pending"

    files = [("files", "one.txt", b"one\n"), ("files", "two.txt", b"two\n")]
    entity = {"entity_type": "user", "entity_id": user.sub.upper()}  # made canonical
    body, content_type = multipart_body(entity, files)
    batch = await client.request(
        "POST", f"{API}/batch_upload/", token=user.token, body=body,
        headers={"Content-Type": content_type},
    )  # fmt: skip
    assert batch.status == 201, batch.body
    location = batch.headers["Location"]
    assert location == f"{client.base}{API}/?entity_type=user&entity_id={user.sub}"
    listed = await client.request("GET", location, token=user.token)
    created = {m["id"] for m in batch.json["created"]}
    assert created <= {m["id"] for m in listed.json["results"]}
