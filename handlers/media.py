"""The media records API: list, read, change, delete, bulk operations, primary."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from mediasvc.handlers.base import BaseHandler
from mediasvc.handlers.idempotent import (
    IDEMPOTENCY_KEY_PARAM,
    REPLAYED_HEADER,
    IdempotentHandler,
    idempotent,
)
from mediasvc.listing import Cursor, MediaPage, MediaQuery
from mediasvc.models.base import Url
from mediasvc.models.media import (
    BulkDeleteRequest,
    BulkDeleteResult,
    BulkUpdateRequest,
    BulkUpdateResult,
    ListParams,
    Media,
    MediaList,
    MediaUpdate,
    ProcessRequest,
)
from mediasvc.openapi import Answer, Header, Operation, Param, PathItem
from mediasvc.services.idempotency import REPLAY_HEADER

API = r"/api/v1/drf/media"
MEDIA_ID = r"(?P<media_id>[^/]+)"
MEDIA_ID_PARAM = Param(
    "media_id", "path", uuid.UUID, "Anything that is not the id of a visible media is a 404."
)


def media_location(base_url: str, media_id: str) -> str:
    """The absolute URL of one media: the `Location` of a 201 that created it."""
    return f"{base_url}{API}/{media_id}/"


def entity_location(base_url: str, entity_type: str, entity_id: str) -> str:
    """The list of one entity's media: the `Location` of a batch that created several."""
    query = urlencode({"entity_type": entity_type, "entity_id": entity_id})
    return f"{base_url}{API}/?{query}"


class MediaListHandler(BaseHandler):
    """GET the media the caller may see, filtered and paginated.

    A client that pages by `offset` gets offset links, as the spec shows; otherwise the
    links carry a `cursor`, which stays as fast on the thousandth page as on the first."""

    openapi = PathItem(
        f"{API}/",
        {
            "get": Operation(
                "listMedia",
                "List the media the caller may see (display_order, then newest first)",
                "media",
                {200: Answer("A page of media; next/previous keep the filters", MediaList)},
                errors=(400, 401, 503),
                query=ListParams,
            )
        },
    )

    async def get(self) -> None:
        principal = self.authenticate()
        query = self.ctx.media.parse_list_query(principal, self.decode_query(ListParams))
        page = await self.ctx.media.list_media(query)
        links = (
            self._offset_links if "offset" in self.request.query_arguments else self._cursor_links
        )
        following, preceding = links(query, page)
        results = [self.ctx.media.present(m, self.base_url) for m in page.items]
        self.write_model(
            MediaList(count=page.count, next=following, previous=preceding, results=results)
        )

    def _offset_links(self, query: MediaQuery, page: MediaPage) -> tuple[str | None, str | None]:
        after = query.offset + query.limit
        following = self._page_link(query, offset=str(after)) if page.has_more else None
        before = max(0, query.offset - query.limit)
        preceding = self._page_link(query, offset=str(before)) if query.offset > 0 else None
        return following, preceding

    def _cursor_links(self, query: MediaQuery, page: MediaPage) -> tuple[str | None, str | None]:
        """Forward from the last item, back from the first. Going forward, there is more
        behind once a cursor was used; going back, more ahead always."""
        backward = query.cursor is not None and query.cursor.before
        more_ahead = backward or page.has_more
        more_behind = page.has_more if backward else query.cursor is not None
        if not page.items:
            more_ahead = more_behind = False
        first, last = (page.items[0].sort_key, page.items[-1].sort_key) if page.items else ("", "")
        following = self._page_link(query, cursor=Cursor(last).encode()) if more_ahead else None
        preceding = (
            self._page_link(query, cursor=Cursor(first, before=True).encode())
            if more_behind
            else None
        )
        return following, preceding

    def _page_link(self, query: MediaQuery, **position: str) -> str:
        """An absolute link to another page that keeps every filter."""
        params = dict(query.filters.items())
        if query.search:
            params["search"] = query.search
        params["limit"] = str(query.limit)
        params.update(position)
        return f"{self.base_url}{self.request.path}?{urlencode(params)}"


class MediaDetailHandler(BaseHandler):
    """GET (counts a view), PATCH and DELETE one media."""

    openapi = PathItem(
        f"{API}/{{media_id}}/",
        {
            "get": Operation(
                "getMedia",
                "Read one media (counts a view)",
                "media",
                {200: Answer("The media", Media)},
                errors=(401, 404, 503),
                linked=True,
            ),
            "patch": Operation(
                "updateMedia",
                "Change title, description, alt_text, display_order or is_primary",
                "media",
                {200: Answer("The changed media", Media)},
                errors=(400, 401, 404, 409, 413, 503),
                body=MediaUpdate,
                body_note="Read-only or unknown fields are a 400",
                linked=True,
            ),
            "delete": Operation(
                "deleteMedia",
                "Delete the media and its files",
                "media",
                {204: Answer("Deleted")},
                errors=(401, 404, 503),
                linked=True,
            ),
        },
        params=(MEDIA_ID_PARAM,),
    )

    async def get(self, media_id: str) -> None:
        media = await self.ctx.media.view(self.authenticate(), media_id)
        self.write_model(self.ctx.media.present(media, self.base_url))

    async def patch(self, media_id: str) -> None:
        principal = self.authenticate()
        media = await self.ctx.media.update(principal, media_id, self.decode(MediaUpdate))
        self.write_model(self.ctx.media.present(media, self.base_url))

    async def delete(self, media_id: str) -> None:
        await self.ctx.media.delete(self.authenticate(), media_id)
        self.no_content()


class MediaDownloadHandler(BaseHandler):
    """GET redirects to the file (counts a download)."""

    openapi = PathItem(
        f"{API}/{{media_id}}/download/",
        {
            "get": Operation(
                "downloadMedia",
                "Redirect to the file (counts a download)",
                "media",
                {302: Answer("To the file", headers={"Location": Header("The file", Url, True)})},
                errors=(401, 404, 409, 503),
                linked=True,
            )
        },
        params=(MEDIA_ID_PARAM,),
    )

    async def get(self, media_id: str) -> None:
        media = await self.ctx.media.download(self.authenticate(), media_id)
        self.redirect(self.ctx.media.present(media, self.base_url).url, status=302)


class SetPrimaryHandler(BaseHandler):
    """POST makes one media the primary of its entity."""

    openapi = PathItem(
        f"{API}/{{media_id}}/set_primary/",
        {
            "post": Operation(
                "setPrimaryMedia",
                "Make the media the primary one of its entity",
                "media",
                {200: Answer("The media, now primary", Media)},
                errors=(401, 404, 409, 503),
                linked=True,
            )
        },
        params=(MEDIA_ID_PARAM,),
    )

    async def post(self, media_id: str) -> None:
        media = await self.ctx.media.set_primary(self.authenticate(), media_id)
        self.write_model(self.ctx.media.present(media, self.base_url))


REPLAYED = {REPLAY_HEADER: REPLAYED_HEADER}


class ProcessHandler(IdempotentHandler):
    """POST queues processing operations (202 with the media and its job)."""

    idempotency_route = "process"
    openapi = PathItem(
        f"{API}/{{media_id}}/process/",
        {
            "post": Operation(
                "processMedia",
                "Queue processing operations (on a failed media: the retry)",
                "media",
                {202: Answer("Queued: the media with its job", Media, headers=REPLAYED)},
                errors=(400, 401, 404, 409, 413, 422, 503),
                body=ProcessRequest,
                params=(IDEMPOTENCY_KEY_PARAM,),
                linked=True,
            )
        },
        params=(MEDIA_ID_PARAM,),
    )

    @idempotent
    async def post(self, media_id: str) -> None:
        principal = self.authenticate()
        media = await self.ctx.media.process(principal, media_id, self.decode(ProcessRequest))
        self.write_model(self.ctx.media.present(media, self.base_url), status=202)


class BulkDeleteHandler(IdempotentHandler):
    """POST {"media_ids": [...]}."""

    idempotency_route = "bulk_delete"
    openapi = PathItem(
        f"{API}/bulk_delete/",
        {
            "post": Operation(
                "bulkDeleteMedia",
                "Delete several media",
                "media",
                {
                    200: Answer(
                        "How many went, and which failed", BulkDeleteResult, headers=REPLAYED
                    )
                },
                errors=(400, 401, 409, 413, 422, 503),
                body=BulkDeleteRequest,
                params=(IDEMPOTENCY_KEY_PARAM,),
            )
        },
    )

    @idempotent
    async def post(self) -> None:
        principal = self.authenticate()
        request = self.decode(BulkDeleteRequest)
        self.write_model(await self.ctx.media.bulk_delete(principal, request))


class BulkUpdateHandler(IdempotentHandler):
    """POST {"media_ids": [...], "updates": {...}}."""

    idempotency_route = "bulk_update"
    openapi = PathItem(
        f"{API}/bulk_update/",
        {
            "post": Operation(
                "bulkUpdateMedia",
                "Apply the same metadata to several media (not is_primary)",
                "media",
                {
                    200: Answer(
                        "How many changed, and which failed", BulkUpdateResult, headers=REPLAYED
                    )
                },
                errors=(400, 401, 409, 413, 422, 503),
                body=BulkUpdateRequest,
                params=(IDEMPOTENCY_KEY_PARAM,),
            )
        },
    )

    @idempotent
    async def post(self) -> None:
        principal = self.authenticate()
        request = self.decode(BulkUpdateRequest)
        self.write_model(await self.ctx.media.bulk_update(principal, request))


routes = [
    (rf"{API}/?", MediaListHandler),
    (rf"{API}/bulk_delete/?", BulkDeleteHandler),
    (rf"{API}/bulk_update/?", BulkUpdateHandler),
    (rf"{API}/{MEDIA_ID}/download/?", MediaDownloadHandler),
    (rf"{API}/{MEDIA_ID}/set_primary/?", SetPrimaryHandler),
    (rf"{API}/{MEDIA_ID}/process/?", ProcessHandler),
    (rf"{API}/{MEDIA_ID}/?", MediaDetailHandler),
]
