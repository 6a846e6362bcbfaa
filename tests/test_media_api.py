"""The media records API: list with filters and links, read, PATCH, DELETE, bulk, primary."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mediasvc.settings import Settings
from tests.support.client import API, Client
from tests.support.media import Uploader
from tests.support.service import stored_files
from tests.support.tokens import Caller, make_token

SPEC_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "url": str,
    "thumbnail_url": (str, type(None)),
    "filename": str,
    "file_size": int,
    "content_type": str,
    "media_type": str,
    "entity_type": str,
    "entity_id": str,
    "title": str,
    "description": str,
    "alt_text": str,
    "status": str,
    "width": (int, type(None)),
    "height": (int, type(None)),
    "is_primary": bool,
    "display_order": int,
    "view_count": int,
    "download_count": int,
    "created_at": str,
    "updated_at": str,
}


async def test_list_fields_are_typed_as_the_spec(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    await upload_media(user, title="Profile Photo")
    listing = await client.request("GET", f"{API}/", token=user.token)
    assert listing.status == 200
    assert set(listing.json) == {"count", "next", "previous", "results"}
    (media,) = listing.json["results"]
    for name, kind in SPEC_FIELDS.items():
        assert isinstance(media[name], kind), name


async def test_filters_search_and_order(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    first = await upload_media(user, title="Sunset over Lake", display_order="1")
    second = await upload_media(user, "file.pdf", title="Menu", description="Prices a.b")
    third = await upload_media(user, "axb notes.txt")
    newest = await upload_media(user, "file.png", title="Second sunset", display_order="1")

    async def ids(query: str) -> list[str]:
        response = await client.request(
            "GET", f"{API}/?entity_id={user.sub}&{query}", token=user.token
        )
        assert response.status == 200, response.body
        return [m["id"] for m in response.json["results"]]

    # display_order first, then newest first
    assert await ids("") == [third["id"], second["id"], newest["id"], first["id"]]
    assert await ids("media_type=document") == [third["id"], second["id"]]
    # The plain text is ready at once; the others are processing until their jobs are done,
    # which the shared worker pool may do at any moment: look once everything settled.
    assert third["id"] in await ids("status=ready")
    deadline = asyncio.get_running_loop().time() + 60
    while await ids("status=processing") and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert await ids("status=processing") == []
    assert await ids("status=ready") == [third["id"], second["id"], newest["id"], first["id"]]
    assert await ids("status=ready&media_type=image") == [newest["id"], first["id"]]
    assert await ids("status=failed") == []
    assert await ids("search=SUNSET") == [newest["id"], first["id"]]
    assert await ids("search=a.b") == [second["id"]]  # literal, not a pattern
    assert await ids("search=axb") == [third["id"]]  # filename
    assert await ids("search=.*") == []
    assert await ids("entity_type=service") == []


async def test_pagination_links_keep_filters(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    for _ in range(5):
        await upload_media(user)
    response = await client.request(
        "GET", f"{API}/?entity_id={user.sub}&media_type=image&limit=2&offset=2", token=user.token
    )
    page = response.json
    assert page["count"] == 5
    assert len(page["results"]) == 2
    for link, offset in ((page["next"], "4"), (page["previous"], "0")):
        parts = urlsplit(link)
        assert parts.scheme == "http" and parts.netloc.startswith("127.0.0.1:")
        query = parse_qs(parts.query)
        assert query == {
            "entity_id": [user.sub],
            "media_type": ["image"],
            "limit": ["2"],
            "offset": [offset],
        }
    last = (await client.request("GET", page["next"], token=user.token)).json
    assert len(last["results"]) == 1 and last["next"] is None
    first = (await client.request("GET", page["previous"], token=user.token)).json
    assert first["previous"] is None


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=0",
        "limit=-5",
        "offset=-1",
        "offset=1e3",
        "limit=99999999999999999999",
        "media_type=exe",
        "status=deleted",
        "entity_id=nope",
        "entity_type=Bad%20Type",
        "search=" + "x" * 201,
        "offset=%E2%91%A0",
        "limit=%D9%A3",
        "search=%ff",
        "entity_id[$ne]=x&entity_id=%7B%22%24ne%22%3A1%7D",
    ],
)
async def test_bad_query_parameters_are_400(client: Client, user: Caller, query: str) -> None:
    response = await client.request("GET", f"{API}/?{query}", token=user.token)
    assert response.status == 400, query
    assert set(response.json) == {"error"}


async def test_large_limit_is_clamped(client: Client, user: Caller, upload_media: Uploader) -> None:
    await upload_media(user)
    await upload_media(user)
    response = await client.request(
        "GET", f"{API}/?entity_id={user.sub}&limit=1000&offset=1", token=user.token
    )
    assert response.status == 200
    assert "limit=100" in response.json["previous"]
    empty = await client.request("GET", f"{API}/?entity_id={user.sub}&offset=500", token=user.token)
    assert empty.json["results"] == [] and empty.json["count"] == 2


async def test_visibility(
    client: Client,
    user: Caller,
    other_user: Caller,
    admin: Caller,
    samples: dict[str, bytes],
    upload_media: Uploader,
) -> None:
    media = await upload_media(user)
    path = f"{API}/{media['id']}/"
    assert (await client.request("GET", path, token=other_user.token)).status == 404
    assert (await client.request("GET", path, token=admin.token)).status == 200
    mine = await client.request("GET", f"{API}/", token=other_user.token)
    assert media["id"] not in [m["id"] for m in mine.json["results"]]
    # A grant-holder who uploaded to a service still sees it after losing the grant.
    service_id = str(uuid.uuid4())
    uploader = str(uuid.uuid4())
    granted = make_token(uploader, entities=[f"service:{service_id}"])
    created = await client.upload(
        granted, "a.jpg", samples["jpg"], {"entity_type": "service", "entity_id": service_id}
    )
    without_grant = make_token(uploader)
    assert (
        await client.request("GET", f"{API}/{created.json['id']}/", token=without_grant)
    ).status == 200


async def test_get_counts_views(client: Client, user: Caller, upload_media: Uploader) -> None:
    media = await upload_media(user)
    for expected in (1, 2):
        response = await client.request("GET", f"{API}/{media['id']}/", token=user.token)
        assert response.json["view_count"] == expected


@pytest.mark.parametrize("media_id", ["nope", "../../etc", str(uuid.uuid4()), "%24where"])
async def test_unknown_media_is_404(client: Client, user: Caller, media_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"{API}/{media_id}/", token=user.token)
        assert response.status == 404
        assert set(response.json) == {"error"}


async def test_download_redirects_and_counts(
    client: Client, user: Caller, samples: dict[str, bytes], upload_media: Uploader
) -> None:
    media = await upload_media(user, "file.pdf")
    response = await client.request("GET", f"{API}/{media['id']}/download/", token=user.token)
    assert response.status == 302
    location = response.headers["Location"]
    assert urlsplit(location).path.endswith(f"{media['id']}.pdf")
    file = await client.request("GET", location)
    assert file.status == 200 and file.body == samples["pdf"]
    again = await client.request("GET", f"{API}/{media['id']}/", token=user.token)
    assert again.json["download_count"] == 1


async def test_patch_editable_fields(client: Client, user: Caller, upload_media: Uploader) -> None:
    media = await upload_media(user)
    changes = {"title": "New", "description": "D", "alt_text": "A", "display_order": 7}
    response = await client.request(
        "PATCH", f"{API}/{media['id']}/", token=user.token, json_body=changes
    )
    assert response.status == 200, response.body
    for name, value in changes.items():
        assert response.json[name] == value
    assert response.json["updated_at"] >= media["updated_at"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "ready"}, "Field 'status' is read-only"),
        ({"file_size": 1}, "Field 'file_size' is read-only"),
        ({"entity_id": "x"}, "Field 'entity_id' is read-only"),
        ({"job": {}}, "Field 'job' is read-only"),
        ({"variants": []}, "Field 'variants' is read-only"),
        ({"placeholder": None}, "Field 'placeholder' is read-only"),
        ({"duration": 1.5}, "Field 'duration' is read-only"),
        ({"bitrate": 128000}, "Field 'bitrate' is read-only"),
        ({"upload_offset": 0}, "Field 'upload_offset' is read-only"),
        ({"$set": {"status": "ready"}}, "Unknown field '$set'"),
        ({"title": 5}, "title must be a string"),
        ({"title": None}, "title must be a string"),
        ({"title": "t" * 256}, "title must be at most 255 characters"),
        ({"description": "d" * 5001}, "description must be at most 5000 characters"),
        ({"alt_text": ["x"]}, "alt_text must be a string"),
        ({"display_order": "1"}, "display_order must be an integer"),
        ({"display_order": True}, "display_order must be an integer"),
        ({"display_order": 1.5}, "display_order must be an integer"),
        ({"display_order": 10**12}, "display_order must be between 0 and 1000000"),
        ({"is_primary": "yes"}, "is_primary must be true or false"),
    ],
)
async def test_patch_refuses_bad_fields(
    client: Client, user: Caller, body: dict[str, Any], message: str, upload_media: Uploader
) -> None:
    media = await upload_media(user, title="Keep")
    response = await client.request(
        "PATCH", f"{API}/{media['id']}/", token=user.token, json_body=body
    )
    assert response.status == 400
    assert response.json == {"error": message}
    unchanged = await client.request("GET", f"{API}/{media['id']}/", token=user.token)
    assert unchanged.json["title"] == "Keep" and unchanged.json["status"] == media["status"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe",
        b"{" * 100000,
        b"[" * 200000 + b"]" * 200000,
    ],
)
async def test_patch_refuses_non_objects(
    client: Client, user: Caller, body: bytes, upload_media: Uploader
) -> None:
    media = await upload_media(user)
    response = await client.request(
        "PATCH",
        f"{API}/{media['id']}/",
        token=user.token,
        body=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    assert set(response.json) == {"error"}


async def test_patch_other_users_media_is_404(
    client: Client, user: Caller, other_user: Caller, upload_media: Uploader
) -> None:
    media = await upload_media(user)
    response = await client.request(
        "PATCH", f"{API}/{media['id']}/", token=other_user.token, json_body={"title": "x"}
    )
    assert response.status == 404


async def test_delete_removes_record_and_file(
    client: Client, user: Caller, settings: Settings, upload_media: Uploader
) -> None:
    media = await upload_media(user)
    stored = settings.storage_path / f"media/user/{user.sub}/{media['id']}.jpg"
    assert stored.exists()
    response = await client.request("DELETE", f"{API}/{media['id']}/", token=user.token)
    assert response.status == 204 and response.body == b""
    assert not stored.exists()
    assert (await client.request("GET", f"{API}/{media['id']}/", token=user.token)).status == 404
    assert (await client.request("DELETE", f"{API}/{media['id']}/", token=user.token)).status == 404


async def test_bulk_delete(
    client: Client, user: Caller, other_user: Caller, settings: Settings, upload_media: Uploader
) -> None:
    # Documents: no processing runs, so no derived file can appear while we look.
    mine = [await upload_media(user, "file.txt") for _ in range(2)]
    theirs = await upload_media(other_user, "file.txt")
    missing = str(uuid.uuid4())
    before = stored_files(settings)
    body = {"media_ids": [mine[0]["id"], mine[1]["id"], theirs["id"], missing, "junk"]}
    response = await client.request("POST", f"{API}/bulk_delete/", token=user.token, json_body=body)
    assert response.status == 200
    assert response.json["deleted"] == 2
    assert {f["id"] for f in response.json["failed"]} == {theirs["id"], missing, "junk"}
    assert all(f["error"] == "Media not found" for f in response.json["failed"])
    gone = {path.name.split(".")[0] for path in before - stored_files(settings)}
    assert gone == {mine[0]["id"], mine[1]["id"]}
    assert not any(p.name.startswith(mine[0]["id"]) for p in stored_files(settings))
    assert (
        await client.request("GET", f"{API}/{theirs['id']}/", token=other_user.token)
    ).status == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"media_ids": []},
        {"media_ids": "x"},
        {"media_ids": [1]},
        {"media_ids": [str(uuid.uuid4())] * 101 + ["x"]},
        {"media_ids": ["x"], "extra": 1},
    ],
)
async def test_bulk_delete_refuses_bad_bodies(
    client: Client, user: Caller, body: dict[str, Any]
) -> None:
    response = await client.request("POST", f"{API}/bulk_delete/", token=user.token, json_body=body)
    assert response.status == 400


async def test_bulk_update(
    client: Client, user: Caller, other_user: Caller, upload_media: Uploader
) -> None:
    mine = [await upload_media(user) for _ in range(2)]
    theirs = await upload_media(other_user)
    body = {"media_ids": [m["id"] for m in mine] + [theirs["id"]], "updates": {"alt_text": "All"}}
    response = await client.request("POST", f"{API}/bulk_update/", token=user.token, json_body=body)
    assert response.status == 200
    assert response.json == {
        "updated": 2,
        "failed": [{"id": theirs["id"], "error": "Media not found"}],
    }
    for media in mine:
        assert (await client.request("GET", f"{API}/{media['id']}/", token=user.token)).json[
            "alt_text"
        ] == "All"
    untouched = await client.request("GET", f"{API}/{theirs['id']}/", token=other_user.token)
    assert untouched.json["alt_text"] == ""


@pytest.mark.parametrize(
    "updates",
    [{}, {"status": "ready"}, {"title": 1}, {"is_primary": True}, {"nope": 1}, "x"],
)
async def test_bulk_update_refuses_bad_updates(
    client: Client, user: Caller, updates: Any, upload_media: Uploader
) -> None:
    media = await upload_media(user, title="Keep")
    body = {"media_ids": [media["id"]], "updates": updates}
    response = await client.request("POST", f"{API}/bulk_update/", token=user.token, json_body=body)
    assert response.status == 400
    assert (await client.request("GET", f"{API}/{media['id']}/", token=user.token)).json[
        "title"
    ] == "Keep"


async def _primaries(client: Client, caller: Caller) -> list[str]:
    listing = await client.request(
        "GET", f"{API}/?entity_id={caller.sub}&limit=100", token=caller.token
    )
    return [m["id"] for m in listing.json["results"] if m["is_primary"]]


async def test_set_primary_moves_the_mark(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    first = await upload_media(user, is_primary="true")
    second = await upload_media(user)
    assert await _primaries(client, user) == [first["id"]]
    response = await client.request("POST", f"{API}/{second['id']}/set_primary/", token=user.token)
    assert response.status == 200 and response.json["is_primary"] is True
    assert await _primaries(client, user) == [second["id"]]
    patched = await client.request(
        "PATCH", f"{API}/{first['id']}/", token=user.token, json_body={"is_primary": True}
    )
    assert patched.json["is_primary"] is True
    assert await _primaries(client, user) == [first["id"]]
    await client.request(
        "PATCH", f"{API}/{first['id']}/", token=user.token, json_body={"is_primary": False}
    )
    assert await _primaries(client, user) == []


async def test_set_primary_race_leaves_exactly_one(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    media = [await upload_media(user) for _ in range(8)]
    for _ in range(3):
        responses = await asyncio.gather(
            *(
                client.request("POST", f"{API}/{m['id']}/set_primary/", token=user.token)
                for m in media
            )
        )
        assert {r.status for r in responses} <= {200, 409}
        assert len(await _primaries(client, user)) == 1


async def test_set_primary_on_others_media_is_404(
    client: Client, user: Caller, other_user: Caller, upload_media: Uploader
) -> None:
    media = await upload_media(user)
    response = await client.request(
        "POST", f"{API}/{media['id']}/set_primary/", token=other_user.token
    )
    assert response.status == 404


async def test_lone_surrogates_are_400(
    client: Client, user: Caller, upload_media: Uploader
) -> None:
    media = await upload_media(user)
    body = b'{"title": "\\ud800"}'
    response = await client.request(
        "PATCH", f"{API}/{media['id']}/", token=user.token, body=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status == 400
    assert response.json == {"error": "title is not valid Unicode"}
