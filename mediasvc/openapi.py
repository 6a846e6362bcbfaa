"""The OpenAPI 3.1 document of the whole API (served at /api/v1/drf/media/openapi.json).

Built from the same constants the code checks against (allowed types, statuses, operations,
and the defaults of the settings schema for every limit), so the document cannot drift from
them. A server configured with other limits keeps the same shapes and status codes.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from mediasvc.media_types import KINDS, MEDIA_TYPES
from mediasvc.pipeline.jobs import OPERATIONS
from mediasvc.services.media import STATUSES
from mediasvc.settings import MB, Settings

Schema = dict[str, Any]

API = "/api/v1/drf/media"
JOB_STATES = ("queued", "running", "done", "failed")
ENTITY_TYPE_PATTERN = "^[a-z][a-z0-9_\\-]{0,63}$"
NO_NUL = "^[^\\u0000]*$"
MAX_QUERY_INT = 999_999_999_999  # query integers may have at most 12 characters
# Shared pieces; the document is deep-copied before it is handed out, so none is aliased.
BINARY: Schema = {"type": "string", "format": "binary"}
UUID: Schema = {"type": "string", "format": "uuid"}
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
URI: Schema = {"type": "string", "format": "uri"}
COUNTER: Schema = {"type": "integer", "minimum": 0}
TEXT: Schema = {"type": "string"}
ENTITY_TYPE: Schema = {"type": "string", "pattern": ENTITY_TYPE_PATTERN}
_CHECK: Schema = {"type": "string", "enum": ["ok", "timeout", "unavailable", "restarting"]}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The document, with `server_url` as its server."""
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "mediasvc",
            "version": "0.1.0",
            "summary": "Media management: upload, list, change and process media files.",
            "description": _DESCRIPTION,
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "media", "description": "Media records"},
            {"name": "uploads", "description": "Direct, batch and presigned uploads"},
            {"name": "tus", "description": "Resumable uploads (tus 1.0.0, every extension)"},
            {"name": "files", "description": "Files of the local blob store"},
            {"name": "operations", "description": "Health, readiness, metrics and this document"},
        ],
        "paths": {
            **_media_paths(),
            **_media_action_paths(),
            **_upload_paths(),
            **_tus_paths(),
            **_local_storage_paths(),
            **_ops_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "HS256 by default; `exp` and `sub` required; optional "
                    "`roles` (`admin`) and `entities` grants such as `service:<uuid>`.",
                }
            },
            "schemas": _schemas(),
            "responses": _error_responses(),
            "parameters": _parameters(),
            "headers": {
                "X-Request-Id": {
                    "description": "The client's X-Request-Id when it looks sane, else a new id.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._\\-]{8,64}$"},
                },
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
            },
        },
    }
    return copy.deepcopy(document)


_DESCRIPTION = """\
Every error is `{"error": "..."}` (400, 401, 403, 404, 405, 409, 413, 416, 429, 503, 507; 429
and 503 carry `Retry-After`) and every response has an `X-Request-Id`. Methods a path does not
list answer 405. Reads of media the caller may not see are 404; writes to entities it may not
act on are 403. Trouble on the server's side is never the client's: storage that fails in any
way (S3 errors, throttling, timeouts, unreachable) is 503, a full disk while receiving an
upload is 507, and neither leaves anything half-done. Every 201 has a `Location`. Integer
fields of JSON bodies take integral numbers such as `3.0`. Limits shown are the defaults of
the settings schema (`mediasvc config`)."""


# ---- helpers


def _default(name: str) -> int:
    """The default of one setting (the limit the document shows)."""
    for field in dataclasses.fields(Settings):
        if field.name == name and isinstance(field.default, int):
            return field.default
    raise KeyError(name)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def _obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """A closed object: every property listed, the required ones (default: all) present."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _headers(**extra: Schema) -> dict[str, Schema]:
    return {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}, **extra}


def _json(description: str, schema: Schema, **headers: Schema) -> Schema:
    return {
        "description": description,
        "headers": _headers(**headers),
        "content": {"application/json": {"schema": schema}},
    }


def _location(description: str) -> Schema:
    return {"required": True, "description": description, "schema": URI}


def _no_body(description: str, **headers: Schema) -> Schema:
    return {"description": description, "headers": _headers(**headers)}


_ERRORS = {
    400: ("BadRequest", "Malformed request or invalid value"),
    401: ("Unauthorized", "Missing, malformed, expired or invalid bearer token"),
    403: ("Forbidden", "Not allowed"),
    404: ("NotFound", "No such media, or the caller may not see it"),
    409: ("Conflict", "Clashes with the current state"),
    413: ("TooLarge", "A body or a file is over its limit"),
    416: ("RangeNotSatisfiable", "The requested range is outside the file"),
    429: ("TooManyRequests", "Too many requests; try again after Retry-After seconds"),
    503: ("Unavailable", "The database or the storage fails or cannot be reached; try again"),
    507: ("InsufficientStorage", "No space left to receive the upload; nothing was kept"),
}


def _errors(*codes: int) -> dict[str, Schema]:
    return {str(c): {"$ref": f"#/components/responses/{_ERRORS[c][0]}"} for c in codes}


def _error_responses() -> dict[str, Schema]:
    responses = {}
    for code, (name, description) in _ERRORS.items():
        retry = code in (429, 503)
        headers = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}} if retry else {}
        responses[name] = _json(description, _ref("Error"), **headers)
    return responses


def _json_body(schema: Schema, description: str = "") -> Schema:
    body: Schema = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Schema],
    **extra: Any,
) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        **extra,
        "responses": responses,
    }


def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


# ---- schemas


def _text_fields(*, for_request: bool) -> dict[str, Schema]:
    fields = {}
    for name in ("title", "description", "alt_text"):
        schema: Schema = {"type": "string"}
        if for_request:
            schema.update(maxLength=_default(f"max_{name}_length"), pattern=NO_NUL)
        fields[name] = schema
    return fields


def _display_order() -> Schema:
    return {"type": "integer", "minimum": 0, "maximum": _default("max_display_order")}


def _kind_rules() -> str:
    """The per-extension rules of a presigned upload, stated once as a table (a schema with
    one branch per extension group defeats client generators)."""
    groups: dict[tuple[str, frozenset[str]], list[str]] = {}
    for kind in KINDS.values():
        groups.setdefault((kind.media_type, kind.sniffed), []).append(kind.extension)
    rows = [
        f"| {', '.join(extensions)} | {media_type} | {', '.join(_accepted(content_types))} "
        f"| {_default(f'max_{media_type}_size') // MB} MB |"
        for (media_type, content_types), extensions in groups.items()
    ]
    header = (
        "| extensions | media type | content_type | file_size at most |\n| --- | --- | --- | --- |"
    )
    return "\n".join([header, *rows])


def _extension_pattern() -> str:
    """`filename` ends with an allowed extension, in any case."""
    any_case = "|".join("".join(f"[{c}{c.upper()}]" for c in ext) for ext in KINDS)
    return f"\\.({any_case})$"


def _accepted(content_types: frozenset[str]) -> list[str]:
    """The declared content types the server takes (it lower-cases what it is given)."""
    return sorted(t for t in content_types if t == t.lower())


def _upload_types() -> list[str]:
    """Every content type some extension accepts."""
    return _accepted(frozenset(t for kind in KINDS.values() for t in kind.sniffed))


def _schemas() -> dict[str, Schema]:
    records = _record_schemas()
    records["Media"]["properties"]["upload_offset"] = {
        **COUNTER,
        "description": "Resumable (tus) uploads only: the bytes received so far",
    }
    return {
        **records,
        **_change_schemas(),
        **_upload_schemas(),
        "Health": _obj({"status": {"const": "ok"}}),
        "Readiness": _obj({"status": {"const": "ready"}, "checks": _ref("ReadinessChecks")}),
        "NotReady": _obj({"error": TEXT, "checks": _ref("ReadinessChecks")}),
        "ReadinessChecks": _obj({"database": _CHECK, "storage": _CHECK}),
    }


def _operations() -> Schema:
    return {"type": "array", "items": {"type": "string", "enum": list(OPERATIONS)}}


def _resize() -> Schema:
    side = {"type": "integer", "minimum": 1, "maximum": _default("max_resize_dimension")}
    return {
        **_obj({"width": side, "height": side}),
        "description": "A box in pixels; integral numbers such as `800.0` count as integers.",
    }


def _record_schemas() -> dict[str, Schema]:
    """What the API answers with: a media record, its variants and job, pages of them."""
    return {
        "Error": _obj({"error": TEXT}),
        "Variant": _obj(
            {
                "name": {**TEXT, "examples": ["thumbnail", "optimized", "webp"]},
                "url": URI,
                "content_type": TEXT,
                "width": _nullable(COUNTER),
                "height": _nullable(COUNTER),
                "size": COUNTER,
            }
        ),
        "Job": _obj(
            {
                "id": UUID,
                "operations": _operations(),
                "options": _obj({"resize": _resize()}, required=[]),
                "state": {"type": "string", "enum": list(JOB_STATES)},
                "attempts": {"type": "integer"},
                "error": _nullable(TEXT),
                "created_at": TIMESTAMP,
                "started_at": _nullable(TIMESTAMP),
                "finished_at": _nullable(TIMESTAMP),
                "duration_ms": _nullable(COUNTER),
            }
        ),
        "Media": _obj(
            {
                "id": UUID,
                "url": {**URI, "description": "The file (local storage: a signed, expiring URL)"},
                "thumbnail_url": _nullable(URI),
                "filename": TEXT,
                "file_size": COUNTER,
                "content_type": {
                    "type": "string",
                    "enum": sorted({kind.content_type for kind in KINDS.values()}),
                },
                "media_type": {"type": "string", "enum": list(MEDIA_TYPES)},
                "entity_type": ENTITY_TYPE,
                "entity_id": UUID,
                **_text_fields(for_request=False),
                "status": {"type": "string", "enum": list(STATUSES)},
                "error": {**_nullable(TEXT), "description": "Why it failed"},
                "width": _nullable(COUNTER),
                "height": _nullable(COUNTER),
                "is_primary": {"type": "boolean"},
                "display_order": {"type": "integer"},
                "view_count": COUNTER,
                "download_count": COUNTER,
                "duration": {**_nullable({"type": "number", "minimum": 0}), "description": "s"},
                "bitrate": {**_nullable(COUNTER), "description": "bits per second"},
                "sha256": _nullable({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
                "variants": {"type": "array", "items": _ref("Variant")},
                "job": {**_nullable(_ref("Job")), "description": "The latest processing job"},
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
            }
        ),
        "MediaList": _obj(
            {
                "count": COUNTER,
                "next": _nullable(URI),
                "previous": _nullable(URI),
                "results": {"type": "array", "items": _ref("Media")},
            }
        ),
    }


def _change_schemas() -> dict[str, Schema]:
    """JSON bodies that change media (PATCH, process, bulk) and what bulk calls answer."""
    failed = {"type": "array", "items": _obj({"id": TEXT, "error": TEXT})}
    return {
        "MediaUpdate": _obj(
            {
                **_text_fields(for_request=True),
                "display_order": _display_order(),
                "is_primary": {"type": "boolean", "description": "true moves the primary mark"},
            },
            required=[],
        ),
        "ProcessRequest": {
            **_obj(
                {
                    "operations": {**_operations(), "minItems": 1},
                    "options": _obj({"resize": _resize()}, required=[]),
                },
                required=["operations"],
            ),
            "description": "`options.resize` is the box (fit inside, never upscaled) of the "
            "`resize` operation, which requires it. With `optimize` and no `resize` operation "
            "(the spec's example: `thumbnail`, `optimize` and a box), the optimized copy "
            "fits inside the box. Any other use of `options.resize` is a 400. Videos and "
            "images take every operation; audio and PDF only `thumbnail`; other documents "
            "none (400).",
            "if": {
                "properties": {"operations": {"contains": {"const": "resize"}}},
                "required": ["operations"],
            },
            "then": {"properties": {"options": {"required": ["resize"]}}, "required": ["options"]},
            "else": {
                "anyOf": [
                    {"properties": {"operations": {"contains": {"const": "optimize"}}}},
                    {"properties": {"options": {"not": {"required": ["resize"]}}}},
                ]
            },
        },
        "BulkIds": {
            "type": "array",
            "minItems": 1,
            "maxItems": _default("max_bulk_ids"),
            "items": TEXT,
            "description": "Media ids; ids that are unknown or not visible are listed in `failed`.",
        },
        "BulkDeleteRequest": _obj({"media_ids": _ref("BulkIds")}),
        "BulkUpdateRequest": _obj(
            {
                "media_ids": _ref("BulkIds"),
                "updates": {
                    **_obj(
                        {**_text_fields(for_request=True), "display_order": _display_order()},
                        required=[],
                    ),
                    "minProperties": 1,
                },
            }
        ),
        "BulkDeleteResult": _obj({"deleted": COUNTER, "failed": failed}),
        "BulkUpdateResult": _obj({"updated": COUNTER, "failed": failed}),
    }


def _upload_schemas() -> dict[str, Schema]:
    """Upload forms, the presigned request and answers, and batch results."""
    max_batch = _default("max_batch_files")
    upload_types = _upload_types()
    status = {"type": "string", "enum": list(STATUSES)}
    batch: dict[str, Schema] = {
        "created": {
            "type": "array",
            "items": _obj({"id": UUID, "filename": TEXT, "status": status}),
        },
        "errors": {"type": "array", "items": _obj({"filename": TEXT, "error": TEXT})},
        "summary": _obj({"total": COUNTER, "successful": COUNTER, "failed": COUNTER}),
    }
    return {
        "UploadForm": {
            **_obj(
                {
                    "file": BINARY,
                    "entity_type": ENTITY_TYPE,
                    "entity_id": UUID,
                    **_text_fields(for_request=True),
                    "is_primary": {
                        "type": "boolean",
                        "description": "Also 1/0, yes/no, on/off; empty is false",
                    },
                    "display_order": _display_order(),
                },
                required=["file", "entity_type", "entity_id"],
            ),
            "description": "Fields in any order. The file's extension and sniffed content "
            "must be allowed; its size within its media type's limit (else 413).",
        },
        "BatchUploadForm": {
            **_obj(
                {
                    "files": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": max_batch,
                        "items": BINARY,
                    },
                    "entity_type": ENTITY_TYPE,
                    "entity_id": UUID,
                },
            ),
            "description": "`files` repeated; each file is checked and stored on its own. "
            f"At most {max_batch} files (`max_batch_files`).",
        },
        "BatchResult": _obj(batch),
        "BatchFailure": {
            **_obj({"error": TEXT, **batch}),
            "description": "No file of the batch could be stored: the reasons, per file.",
        },
        "PresignedUploadRequest": {
            **_obj(
                {
                    "filename": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 1024,
                        "pattern": _extension_pattern(),
                    },
                    "content_type": {"type": "string", "enum": upload_types},
                    "entity_type": ENTITY_TYPE,
                    "entity_id": UUID,
                    "file_size": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": max(_default(f"max_{t}_size") for t in MEDIA_TYPES),
                    },
                    **_text_fields(for_request=True),
                },
                required=["filename", "content_type", "entity_type", "entity_id", "file_size"],
            ),
            "description": "The extension of `filename` decides the rest: `content_type` "
            "must be one its row lists (else 400) and `file_size` within its media type's "
            "limit (else 413). An integral `file_size` such as `2048.0` counts as an integer.\n\n"
            + _kind_rules(),
        },
        "PresignedUpload": _obj(
            {
                "upload_url": URI,
                "upload_headers": {
                    "type": "object",
                    "properties": {"Content-Type": TEXT},
                    "required": ["Content-Type"],
                    "additionalProperties": TEXT,
                },
                "media_id": UUID,
                "storage_key": TEXT,
                "expires_at": TIMESTAMP,
            }
        ),
        "LocalUploadResult": _obj({"storage_key": TEXT, "size": COUNTER}),
    }


def _parameters() -> dict[str, Schema]:
    def query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
        return {
            "name": name,
            "in": "query",
            "required": required,
            "schema": schema,
            "description": description,
        }

    return {
        "MediaId": {
            "name": "media_id",
            "in": "path",
            "required": True,
            "schema": UUID,
            "description": "Anything that is not the id of a visible media is a 404.",
        },
        "StorageKey": {
            "name": "key",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "The storage key (it contains `/`, sent as is).",
        },
        "Expires": query(
            "expires",
            {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT},
            "Unix time the signed URL expires at",
            required=True,
        ),
        "Signature": query(
            "sig",
            {"type": "string", "pattern": "^[A-Za-z0-9_\\-]*$"},
            "HMAC-SHA256 signature (base64url)",
            required=True,
        ),
    }


# ---- paths


def _list_parameters() -> list[Schema]:
    """The filters and the page of GET /api/v1/drf/media/."""
    return [
        {
            "name": "entity_type",
            "in": "query",
            "schema": ENTITY_TYPE,
            "description": "service, practitioner, user, ...",
        },
        {"name": "entity_id", "in": "query", "schema": UUID},
        {
            "name": "media_type",
            "in": "query",
            "schema": {"type": "string", "enum": list(MEDIA_TYPES)},
        },
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
        {
            "name": "search",
            "in": "query",
            "schema": {"type": "string", "maxLength": _default("max_search_length")},
            "description": "Literal, case-insensitive, over filename, title and description",
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_QUERY_INT,
                "default": _default("default_page_size"),
            },
            "description": f"Page size; above {_default('max_page_size')} it is clamped",
        },
        {
            "name": "offset",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT, "default": 0},
            "description": "Skip this many; a client that pages by offset gets offset links",
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "maxLength": 200},
            "description": (
                "An opaque position from a `next` or `previous` link: as fast on any page as on"
                " the first (links carry one unless the request used `offset`)"
            ),
        },
    ]


def _media_paths() -> dict[str, Schema]:
    media = _ref("Media")
    return {
        f"{API}/": {
            "get": _op(
                "listMedia",
                "List the media the caller may see (display_order, then newest first)",
                "media",
                {
                    "200": _json(
                        "A page of media; next/previous keep the filters", _ref("MediaList")
                    ),
                    **_errors(400, 401, 503),
                },
                parameters=_list_parameters(),
            )
        },
        f"{API}/{{media_id}}/": {
            "parameters": [_param("MediaId")],
            "get": _op(
                "getMedia",
                "Read one media (counts a view)",
                "media",
                {"200": _json("The media", media), **_errors(401, 404, 503)},
            ),
            "patch": _op(
                "updateMedia",
                "Change title, description, alt_text, display_order or is_primary",
                "media",
                {"200": _json("The changed media", media), **_errors(400, 401, 404, 409, 413, 503)},
                requestBody=_json_body(
                    _ref("MediaUpdate"), "Read-only or unknown fields are a 400"
                ),
            ),
            "delete": _op(
                "deleteMedia",
                "Delete the media and its files",
                "media",
                {"204": _no_body("Deleted"), **_errors(401, 404, 503)},
            ),
        },
    }


def _media_action_paths() -> dict[str, Schema]:
    media = _ref("Media")
    media_id = [_param("MediaId")]
    return {
        f"{API}/{{media_id}}/download/": {
            "parameters": media_id,
            "get": _op(
                "downloadMedia",
                "Redirect to the file (counts a download)",
                "media",
                {
                    "302": _no_body(
                        "To the file",
                        Location={"required": True, "schema": {"type": "string", "format": "uri"}},
                    ),
                    **_errors(401, 404, 409, 503),
                },
            ),
        },
        f"{API}/{{media_id}}/set_primary/": {
            "parameters": media_id,
            "post": _op(
                "setPrimaryMedia",
                "Make the media the primary one of its entity",
                "media",
                {"200": _json("The media, now primary", media), **_errors(401, 404, 409, 503)},
            ),
        },
        f"{API}/{{media_id}}/process/": {
            "parameters": media_id,
            "post": _op(
                "processMedia",
                "Queue processing operations (on a failed media: the retry)",
                "media",
                {
                    "202": _json("Queued: the media with its job", media),
                    **_errors(400, 401, 404, 409, 413, 503),
                },
                requestBody=_json_body(_ref("ProcessRequest")),
            ),
        },
        f"{API}/bulk_delete/": {
            "post": _op(
                "bulkDeleteMedia",
                "Delete several media",
                "media",
                {
                    "200": _json("How many went, and which failed", _ref("BulkDeleteResult")),
                    **_errors(400, 401, 413, 503),
                },
                requestBody=_json_body(_ref("BulkDeleteRequest")),
            )
        },
        f"{API}/bulk_update/": {
            "post": _op(
                "bulkUpdateMedia",
                "Apply the same metadata to several media (not is_primary)",
                "media",
                {
                    "200": _json("How many changed, and which failed", _ref("BulkUpdateResult")),
                    **_errors(400, 401, 413, 503),
                },
                requestBody=_json_body(_ref("BulkUpdateRequest")),
            )
        },
    }


_MEDIA_LINKS = (
    ("GetMedia", "getMedia"),
    ("UpdateMedia", "updateMedia"),
    ("ConfirmUpload", "confirmUpload"),
    ("ProcessMedia", "processMedia"),
    ("SetPrimary", "setPrimaryMedia"),
    ("DownloadMedia", "downloadMedia"),
    ("DeleteMedia", "deleteMedia"),
)


def _upload_paths() -> dict[str, Schema]:
    media = _ref("Media")

    def links(field: str) -> Schema:
        """What a created media's id leads to (for clients and stateful testing)."""
        return {
            name: {"operationId": operation, "parameters": {"media_id": f"$response.body#/{field}"}}
            for name, operation in _MEDIA_LINKS
        }

    return {
        f"{API}/upload/": {
            "post": _op(
                "uploadMedia",
                "Upload one file (multipart, streamed)",
                "uploads",
                {
                    "201": {
                        **_json("Stored and recorded", media, Location=_location("The media")),
                        "links": links("id"),
                    },
                    **_errors(400, 401, 403, 409, 413, 429, 503, 507),
                },
                requestBody={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _ref("UploadForm")}},
                },
            )
        },
        f"{API}/batch_upload/": {
            "post": _op(
                "batchUploadMedia",
                "Upload several files to one entity (multipart)",
                "uploads",
                {
                    "201": _json(
                        "At least one file was stored",
                        _ref("BatchResult"),
                        Location=_location(
                            "The list of the entity's media, which holds every media created"
                        ),
                    ),
                    "400": _json(
                        "Invalid form, or no file could be stored",
                        {"anyOf": [_ref("Error"), _ref("BatchFailure")]},
                    ),
                    **_errors(401, 403, 413, 429, 503, 507),
                },
                requestBody={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _ref("BatchUploadForm")}},
                },
            )
        },
        f"{API}/presigned_upload/": {
            "post": _op(
                "presignedUpload",
                "Record a pending media and get a signed PUT URL for its bytes",
                "uploads",
                {
                    "201": {
                        **_json(
                            "PUT the bytes with upload_headers, then confirm",
                            _ref("PresignedUpload"),
                            Location=_location("The pending media"),
                        ),
                        "links": links("media_id"),
                    },
                    **_errors(400, 401, 403, 413, 503),
                },
                requestBody=_json_body(_ref("PresignedUploadRequest")),
            )
        },
        f"{API}/{{media_id}}/confirm_upload/": {
            "parameters": [_param("MediaId")],
            "post": _op(
                "confirmUpload",
                "Check the uploaded object and move the media on (uploader or admin)",
                "uploads",
                {
                    "200": _json("The media (confirming again changes nothing)", media),
                    "400": _json("The object was rejected (the media failed)", _ref("Error")),
                    **_errors(401, 403, 404, 503),
                    "409": _json("upload not found", _ref("Error")),
                },
            ),
        },
    }


def _local_storage_paths() -> dict[str, Schema]:
    signed = [_param("StorageKey"), _param("Expires"), _param("Signature")]
    # The stored type is sent (image/jpeg, ...); octet-stream first, so that generated
    # clients read the file as bytes.
    binary: Schema = {"application/octet-stream": {"schema": BINARY}, "*/*": {"schema": {}}}
    file_headers: dict[str, Schema] = {
        "ETag": {"required": True, "schema": {"type": "string"}},
        "Cache-Control": {"schema": {"type": "string"}},
        "Content-Disposition": {
            "schema": {"type": "string"},
            "description": "attachment, for anything but raster images, audio and video",
        },
    }
    file_responses = {
        "200": {"description": "The file", "headers": _headers(**file_headers), "content": binary},
        "206": {
            "description": "Part of the file",
            "headers": {
                **_headers(**file_headers),
                "Content-Range": {"required": True, "schema": {"type": "string"}},
            },
            "content": binary,
        },
        "304": _no_body("Not modified (If-None-Match)"),
        "400": _json("Malformed request (a GET with an unparsable form body)", _ref("Error")),
        "403": _json("Invalid or expired file URL", _ref("Error")),
        "404": _json("No such file", _ref("Error")),
        **_errors(416),
    }
    upload_types = _upload_types()
    return {
        "/files/{key}": {
            "parameters": signed,
            "get": _op(
                "getFile",
                "A stored file under a signed, expiring URL (local storage; Range, ETag)",
                "files",
                file_responses,
                security=[],
            ),
            "head": _op(
                "headFile", "Headers of a stored file", "files", file_responses, security=[]
            ),
        },
        "/uploads/{key}": {
            "put": _op(
                "putPresignedUpload",
                "The bytes of a presigned upload (local storage; the signed URL is the credential)",
                "files",
                {
                    "200": _json("Stored; now confirm the upload", _ref("LocalUploadResult")),
                    "400": _json("Wrong Content-Type or size", _ref("Error")),
                    "403": _json("Invalid or expired upload URL", _ref("Error")),
                    "404": _json("No upload is expected at this URL", _ref("Error")),
                    "409": _json("This upload URL was already used", _ref("Error")),
                    **_errors(413, 429, 503, 507),
                },
                security=[],
                parameters=[
                    _param("StorageKey"),
                    {
                        "name": "content_type",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "enum": upload_types},
                        "description": "The body's Content-Type must be exactly this",
                    },
                    {
                        "name": "size",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                        "description": "The body must have exactly this many bytes",
                    },
                    _param("Expires"),
                    _param("Signature"),
                ],
                requestBody={
                    "required": True,
                    "description": "The file's bytes, sent with `Content-Type: <content_type>` "
                    "(the `upload_headers` of the presigned answer) or "
                    "`application/octet-stream`; its content is checked on confirm.",
                    "content": {"application/octet-stream": {"schema": BINARY}},
                },
            )
        },
    }


def _ops_paths() -> dict[str, Schema]:
    return {
        f"{API}/openapi.json": {
            "get": _op(
                "getOpenApi",
                "This document",
                "operations",
                {"200": _json("OpenAPI 3.1", {"type": "object"})},
                security=[],
            )
        },
        "/healthz": {
            "get": _op(
                "health",
                "Liveness: the process answers",
                "operations",
                {"200": _json("Alive", _ref("Health"))},
                security=[],
            )
        },
        "/readyz": {
            "get": _op(
                "readiness",
                "Readiness: the database and the storage answer",
                "operations",
                {
                    "200": _json("Ready", _ref("Readiness")),
                    "503": _json(
                        "Not ready",
                        _ref("NotReady"),
                        **{"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
                    ),
                },
                security=[],
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics",
                "operations",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "headers": _headers(),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                security=[],
            )
        },
    }


# ---- resumable uploads (tus 1.0.0)

_TUS_VERSION: Schema = {"type": "string", "enum": ["1.0.0"]}
_TUS_ERRORS = {
    400: "Malformed tus header, metadata or value (or the completed file was rejected)",
    401: "Missing, malformed, expired or invalid bearer token",
    403: "No permission for the entity, or a final upload cannot change",
    404: "No such upload, or not the caller's",
    409: "Upload-Offset is not the upload's offset",
    410: "The upload expired or was rejected",
    412: "Tus-Resumable is missing or not 1.0.0 (the answer carries Tus-Version)",
    413: "Over the upload's length, its media type's limit or tus_max_chunk_size",
    415: "The PATCH body is not application/offset+octet-stream",
    423: "Another request is appending to this upload; retry after Retry-After",
    429: "Too many uploads in progress; try again after Retry-After seconds",
    460: "The chunk does not match its Upload-Checksum (it was discarded)",
    503: "The database or the storage fails or cannot be reached; try again",
    507: "No space left to receive the upload",
}


def _tus_header(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, "schema": schema or TEXT}


def _tus_answer_headers(**extra: Schema) -> dict[str, Schema]:
    resumable = {**_tus_header("Always 1.0.0", _TUS_VERSION), "required": True}
    expires = _tus_header("When an unfinished upload expires (RFC 9110 date)")
    return _headers(**{"Tus-Resumable": resumable, "Upload-Expires": expires, **extra})


def _tus_errors(*codes: int) -> dict[str, Schema]:
    answers = {}
    for code in codes:
        headers: dict[str, Schema] = {}
        if code in (423, 429, 503):
            headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
        if code == 412:
            headers["Tus-Version"] = _tus_header("The versions this server speaks")
        answers[str(code)] = {
            "description": _TUS_ERRORS[code],
            "headers": _tus_answer_headers(**headers),
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return answers


def _tus_request_header(name: str, description: str, schema: Schema | None = None) -> Schema:
    required = name == "Tus-Resumable"
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": schema or TEXT,
        "description": description,
    }


def _tus_paths() -> dict[str, Schema]:
    """The tus routes: documented with the protocol's headers and every status it names."""
    resumable = _tus_request_header("Tus-Resumable", "Must be 1.0.0 (else 412)", _TUS_VERSION)
    offset_header = {**_tus_header("Bytes received", COUNTER), "required": True}
    body: Schema = {
        "required": False,
        "content": {"application/offset+octet-stream": {"schema": BINARY}},
    }
    discovery = _op(
        "tusOptions",
        "Discover the tus versions, extensions, limits and checksum algorithms",
        "tus",
        {
            "204": {
                "description": "The server's tus configuration",
                "headers": _tus_answer_headers(
                    **{
                        "Tus-Version": _tus_header("1.0.0"),
                        "Tus-Extension": _tus_header("The supported extensions"),
                        "Tus-Max-Size": _tus_header("The largest upload", COUNTER),
                        "Tus-Checksum-Algorithm": _tus_header("sha1,sha256,md5"),
                    }
                ),
            }
        },
        security=[],
    )
    return {
        f"{API}/tus/": {
            "options": discovery,
            "post": _op(
                "tusCreate",
                "Create a resumable upload: a pending media (or a partial upload, or a final "
                "one joined from partial uploads); the body may carry the first bytes",
                "tus",
                {
                    "201": {
                        "description": "Created; PATCH the bytes to Location (its last segment "
                        "is the media's id)",
                        "headers": _tus_answer_headers(
                            Location=_location("The upload"),
                            **{"Upload-Offset": _tus_header("Bytes taken", COUNTER)},
                        ),
                    },
                    **_tus_errors(400, 401, 403, 404, 410, 412, 413, 423, 429, 503, 507),
                },
                parameters=[
                    resumable,
                    _tus_request_header("Upload-Length", "The file's size in bytes"),
                    _tus_request_header("Upload-Defer-Length", "1: the size comes later"),
                    _tus_request_header(
                        "Upload-Metadata",
                        "Comma-separated `key base64(value)`: filename, entity_type and "
                        "entity_id required; title, description, alt_text, is_primary and "
                        "display_order optional",
                    ),
                    _tus_request_header(
                        "Upload-Concat", "`partial`, or `final;<partial upload URLs>`"
                    ),
                ],
                requestBody=body,
            ),
        },
        f"{API}/tus/{{media_id}}": {
            "parameters": [_param("MediaId")],
            "options": {**discovery, "operationId": "tusUploadOptions"},
            "head": _op(
                "tusHead",
                "The upload's offset (where to resume), length, metadata and expiry",
                "tus",
                {
                    "200": {
                        "description": "The upload",
                        "headers": _tus_answer_headers(
                            **{
                                "Upload-Offset": _tus_header("Bytes received", COUNTER),
                                "Upload-Length": _tus_header("The file's size", COUNTER),
                                "Upload-Defer-Length": _tus_header("1 while the size is unknown"),
                                "Upload-Metadata": _tus_header("As sent at creation"),
                                "Upload-Concat": _tus_header("partial, or final;<URLs>"),
                                "Cache-Control": _tus_header("no-store"),
                            }
                        ),
                    },
                    **_tus_errors(401, 404, 410, 412, 423, 503),
                },
                parameters=[resumable],
            ),
            "patch": _op(
                "tusPatch",
                "Append bytes at Upload-Offset; the last ones complete the media",
                "tus",
                {
                    "204": {
                        "description": "Stored durably",
                        "headers": _tus_answer_headers(**{"Upload-Offset": offset_header}),
                    },
                    **_tus_errors(
                        400, 401, 403, 404, 409, 410, 412, 413, 415, 423, 429, 460, 503, 507
                    ),
                },
                parameters=[
                    resumable,
                    {
                        **_tus_request_header("Upload-Offset", "The upload's offset"),
                        "required": True,
                        "schema": COUNTER,
                    },
                    _tus_request_header("Upload-Checksum", "`sha1|sha256|md5 base64(digest)`"),
                    _tus_request_header("Upload-Length", "Declares a deferred length"),
                ],
                requestBody={**body, "required": True},
            ),
            "delete": _op(
                "tusTerminate",
                "Terminate the upload: what it received and its pending media go",
                "tus",
                {
                    "204": {"description": "Terminated", "headers": _tus_answer_headers()},
                    **_tus_errors(401, 404, 412, 423, 503),
                },
                parameters=[resumable],
            ),
        },
    }
