"""The media records API: list, read, change, delete, bulk operations, primary."""

from __future__ import annotations

from urllib.parse import urlencode

from mediasvc.handlers.base import BaseHandler
from mediasvc.services.media import ListQuery

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
    """GET the media the caller may see, filtered and paginated."""

    async def get(self) -> None:
        principal = self.authenticate()
        params = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        query = self.ctx.media.parse_list_query(params)
        page = await self.ctx.media.list_media(principal, query)
        self.write_json(
            {
                "count": page.count,
                "next": self._page_link(query, page.offset + page.limit)
                if page.offset + page.limit < page.count
                else None,
                "previous": self._page_link(query, max(0, page.offset - page.limit))
                if page.offset > 0
                else None,
                "results": [self.ctx.media.present(m, self.base_url) for m in page.items],
            }
        )

    def _page_link(self, query: ListQuery, offset: int) -> str:
        """An absolute link to another page that keeps every filter."""
        params = dict(query.filters)
        if query.search:
            params["search"] = query.search
        params["limit"] = str(query.limit)
        params["offset"] = str(offset)
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
