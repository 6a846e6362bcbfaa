"""The media records API: list, read, change, delete, bulk operations, primary."""

from __future__ import annotations

from urllib.parse import urlencode

from mediasvc.handlers.base import BaseHandler
from mediasvc.listing import Cursor, MediaPage, MediaQuery

API = r"/api/v1/drf/media"
MEDIA_ID = r"(?P<media_id>[^/]+)"


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

    async def get(self) -> None:
        principal = self.authenticate()
        params = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        query = self.ctx.media.parse_list_query(principal, params)
        page = await self.ctx.media.list_media(query)
        links = self._offset_links if "offset" in params else self._cursor_links
        following, preceding = links(query, page)
        self.write_json(
            {
                "count": page.count,
                "next": following,
                "previous": preceding,
                "results": [self.ctx.media.present(m, self.base_url) for m in page.items],
            }
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

    async def get(self, media_id: str) -> None:
        media = await self.ctx.media.view(self.authenticate(), media_id)
        self.write_json(self.ctx.media.present(media, self.base_url))

    async def patch(self, media_id: str) -> None:
        principal = self.authenticate()
        media = await self.ctx.media.update(principal, media_id, self.json_body())
        self.write_json(self.ctx.media.present(media, self.base_url))

    async def delete(self, media_id: str) -> None:
        await self.ctx.media.delete(self.authenticate(), media_id)
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class MediaDownloadHandler(BaseHandler):
    """GET redirects to the file (counts a download)."""

    async def get(self, media_id: str) -> None:
        media = await self.ctx.media.download(self.authenticate(), media_id)
        self.redirect(self.ctx.media.present(media, self.base_url)["url"], status=302)


class SetPrimaryHandler(BaseHandler):
    """POST makes one media the primary of its entity."""

    async def post(self, media_id: str) -> None:
        media = await self.ctx.media.set_primary(self.authenticate(), media_id)
        self.write_json(self.ctx.media.present(media, self.base_url))


class ProcessHandler(BaseHandler):
    """POST queues processing operations (202 with the media and its job)."""

    async def post(self, media_id: str) -> None:
        principal = self.authenticate()
        media = await self.ctx.media.process(principal, media_id, self.json_body())
        self.write_json(self.ctx.media.present(media, self.base_url), status=202)


class BulkDeleteHandler(BaseHandler):
    """POST {"media_ids": [...]}."""

    async def post(self) -> None:
        principal = self.authenticate()
        self.write_json(await self.ctx.media.bulk_delete(principal, self.json_body()))


class BulkUpdateHandler(BaseHandler):
    """POST {"media_ids": [...], "updates": {...}}."""

    async def post(self) -> None:
        principal = self.authenticate()
        self.write_json(await self.ctx.media.bulk_update(principal, self.json_body()))


routes = [
    (rf"{API}/?", MediaListHandler),
    (rf"{API}/bulk_delete/?", BulkDeleteHandler),
    (rf"{API}/bulk_update/?", BulkUpdateHandler),
    (rf"{API}/{MEDIA_ID}/download/?", MediaDownloadHandler),
    (rf"{API}/{MEDIA_ID}/set_primary/?", SetPrimaryHandler),
    (rf"{API}/{MEDIA_ID}/process/?", ProcessHandler),
    (rf"{API}/{MEDIA_ID}/?", MediaDetailHandler),
]
