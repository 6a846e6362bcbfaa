"""The OpenAPI 3.1 document, generated from the models and the route table.

Each handler declares its path and operations beside its code (`openapi = PathItem(...)`):
summary, body model, answers with their models, error codes, parameters. The document is the
declarations of the routes this server registered, in route order, with the JSON Schema that
msgspec makes of the models they name. Limits that are settings (`limited_by` in
mediasvc/models/base.py) show this server's values, and so does any `{setting}` in a description.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from mediasvc.models.base import Binary, Error, Shape
from mediasvc.settings import Settings

Schema = dict[str, Any]
REF = "#/components/schemas/{name}"
ERRORS = {
    400: ("BadRequest", "Malformed request or invalid value"),
    401: ("Unauthorized", "Missing, malformed, expired or invalid bearer token"),
    403: ("Forbidden", "Not allowed"),
    404: ("NotFound", "No such media, or the caller may not see it"),
    409: ("Conflict", "Clashes with the current state"),
    413: ("TooLarge", "A body or a file is over its limit"),
    416: ("RangeNotSatisfiable", "The requested range is outside the file"),
    422: ("UnprocessableContent", "The Idempotency-Key was used for a different request"),
    429: ("TooManyRequests", "Too many requests; try again after Retry-After seconds"),
    503: ("Unavailable", "The database or the storage fails or cannot be reached; try again"),
    507: ("InsufficientStorage", "No space left to receive the upload; nothing was kept"),
}
RETRY_AFTER = frozenset({423, 429, 503})  # answers that say when to try again
TAGS = {
    "media": "Media records",
    "uploads": "Direct, batch and presigned uploads",
    "tus": "Resumable uploads (tus 1.0.0, every extension)",
    "webhooks": "Webhook endpoints and their deliveries (admins only; Standard Webhooks)",
    "files": "Files of the local blob store",
    "operations": "Health, readiness, metrics and this document",
}
DESCRIPTION = """\
Every error is `{"error": "..."}` (400, 401, 403, 404, 405, 409, 413, 416, 422, 429, 503, 507; 429
and 503 carry `Retry-After`) and every response has an `X-Request-Id`. Methods a path does not
list answer 405. Reads of media the caller may not see are 404; writes to entities it may not
act on are 403. Trouble on the server's side is never the client's: storage that fails in any
way (S3 errors, throttling, timeouts, unreachable) is 503, a full disk while receiving an
upload is 507, and neither leaves anything half-done. Every 201 has a `Location`. Integer
fields of JSON bodies take integral numbers such as `3.0`. Limits shown are this server's
settings (`mediasvc config` prints them)."""


@dataclass(frozen=True)
class Header:
    """A header of an answer."""

    description: str
    schema: Any = str  # a type (its JSON Schema) or a schema
    required: bool = False


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter of an operation."""

    name: str
    where: str
    schema: Any = str
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Answer:
    """One documented answer: its body (a model or a schema, `media` typed) and headers."""

    description: str
    body: Any = None
    media: str = "application/json"
    headers: Mapping[str, Header] = field(default_factory=dict)
    links: str | None = None  # the body field that holds a created media's id
    content: Mapping[str, Any] | None = None  # several media types: type -> model or schema


@dataclass(frozen=True)
class Operation:
    """One method of a path: what it does, takes and answers."""

    id: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()  # the standard error answers (ERRORS)
    body: Any = None  # a model or a schema
    body_media: str = "application/json"
    body_note: str = ""
    body_required: bool = True
    params: tuple[Param, ...] = ()
    query: type | None = None  # a model whose fields are the query parameters
    public: bool = False  # no token needed
    linked: bool = False  # links lead here from a created media's id


@dataclass(frozen=True)
class PathItem:
    """A documented path: its operations by method, and the parameters they share."""

    path: str
    operations: Mapping[str, Operation]
    params: tuple[Param, ...] = ()


def openapi_document(settings: Settings, handlers: Iterable[type]) -> Schema:
    """The document of these handlers (the route table's, in order), without `servers`."""
    declared = (getattr(handler, "openapi", None) for handler in handlers)
    items = [item for item in declared if isinstance(item, PathItem)]
    builder = _Builder(settings, [o.id for i in items for o in i.operations.values() if o.linked])
    paths = {item.path: builder.path(item) for item in items}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mediasvc",
            "version": "0.1.0",
            "summary": "Media management: upload, list, change and process media files.",
            "description": DESCRIPTION,
        },
        "security": [{"bearerAuth": []}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
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
            "schemas": builder.components(),
            "responses": {
                name: builder.answer(code, Answer(text, Error))
                for code, (name, text) in ERRORS.items()
            },
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


class _Builder:
    """Turns declarations into document parts, gathering the schemas of the models."""

    def __init__(self, settings: Settings, linked: list[str]) -> None:
        self.settings = settings
        self.linked = linked
        self._components: dict[str, Schema] = {}

    def schema(self, declared: Any) -> Schema:
        """A declared schema as is; a type (model, enum, constrained type) as msgspec has it;
        a tuple of types as any of them (msgspec refuses untagged unions of models)."""
        if isinstance(declared, tuple):
            return {"anyOf": [self.schema(one) for one in declared]}
        schema = declared
        if not isinstance(declared, dict):
            (schema,), parts = msgspec.json.schema_components(
                [declared], schema_hook=_binary, ref_template=REF
            )
            self._components.update(parts)
        settled: Schema = _settle(schema, self.settings)
        return settled

    def components(self) -> dict[str, Schema]:
        """Every model named so far, with this server's limits and each model's extras."""
        models: dict[str, type[Shape]] = {cls.__name__: cls for cls in _subclasses(Shape)}
        done = {}
        for name, schema in sorted(self._components.items()):
            if name in models:
                schema = _merge(schema, models[name].extra_schema(self.settings))
            done[name] = _settle(schema, self.settings)
        return done

    def path(self, item: PathItem) -> Schema:
        """A path item: shared parameters, then each operation."""
        shared = {"parameters": [self.param(p) for p in item.params]} if item.params else {}
        return {**shared, **{m: self.operation(op) for m, op in item.operations.items()}}

    def operation(self, op: Operation) -> Schema:
        """One operation object."""
        answers = {str(code): self.answer(code, answer) for code, answer in op.answers.items()}
        for code in op.errors:
            answers.setdefault(str(code), {"$ref": f"#/components/responses/{ERRORS[code][0]}"})
        params = [self.param(p) for p in op.params] + self._query(op.query)
        done: Schema = {"operationId": op.id, "summary": op.summary, "tags": [op.tag]}
        if op.public:
            done["security"] = []
        if params:
            done["parameters"] = params
        if op.body is not None:
            body = {"content": {op.body_media: {"schema": self.schema(op.body)}}}
            note = {"description": op.body_note} if op.body_note else {}
            done["requestBody"] = {"required": op.body_required, **note, **body}
        return {**done, "responses": dict(sorted(answers.items()))}

    def answer(self, code: int, answer: Answer) -> Schema:
        """One response object; every one has an X-Request-Id, some a Retry-After."""
        headers: Schema = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
        headers.update({name: self.header(h) for name, h in answer.headers.items()})
        if code in RETRY_AFTER:
            headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
        done: Schema = {"description": answer.description, "headers": headers}
        content = answer.content or ({answer.media: answer.body} if answer.body else {})
        if content:
            done["content"] = {media: {"schema": self.schema(b)} for media, b in content.items()}
        if answer.links:
            where = f"$response.body#/{answer.links}"
            done["links"] = {
                op[0].upper() + op[1:]: {"operationId": op, "parameters": {"media_id": where}}
                for op in self.linked
            }
        return done

    def header(self, header: Header) -> Schema:
        """One header of an answer."""
        required = {"required": True} if header.required else {}
        return {"description": header.description, **required, "schema": self.schema(header.schema)}

    def param(self, param: Param) -> Schema:
        """One parameter (a path parameter is always required)."""
        required = param.required or param.where == "path"
        done: Schema = {"name": param.name, "in": param.where, "required": required}
        described = _settle({"description": param.description}, self.settings)
        described = described if param.description else {}
        return {**done, **described, "schema": self.schema(param.schema)}

    def _query(self, model: type | None) -> list[Schema]:
        """The fields of a model as query parameters (the model is no component itself)."""
        if model is None:
            return []
        self.schema(model)
        schema = self._components.pop(model.__name__)
        required = set(schema.get("required", ()))
        return [
            self.param(Param(name, "query", prop, prop.pop("description", ""), name in required))
            for name, prop in schema["properties"].items()
        ]


def _binary(cls: type) -> Schema:
    if cls is Binary:
        return {"type": "string", "format": "binary"}
    raise NotImplementedError


def _subclasses(cls: type[Shape]) -> Iterable[type[Shape]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_SETTING = re.compile(r"\{([a-z_]+)\}")
_SETTINGS = frozenset({f.name for f in dataclasses.fields(Settings)} | {"largest_upload"})


def _settle(node: Any, settings: Settings) -> Any:
    """A schema with each `x-setting` replaced by the running value, `{setting}` in
    descriptions filled in, patterns ending as JSON Schema ends them, and string enums
    typed (msgspec leaves Literal choices untyped)."""
    if isinstance(node, list):
        return [_settle(item, settings) for item in node]
    if not isinstance(node, dict):
        return node
    done = {key: _settle(value, settings) for key, value in node.items() if key != "x-setting"}
    for keyword, name in node.get("x-setting", {}).items():
        done[keyword] = getattr(settings, name)
    if isinstance(done.get("description"), str):
        text = done["description"]
        done["description"] = _SETTING.sub(
            lambda m: str(getattr(settings, m[1])) if m[1] in _SETTINGS else m[0], text
        )
    if isinstance(done.get("pattern"), str) and done["pattern"].endswith("\\Z"):
        done["pattern"] = done["pattern"][:-2] + "$"  # Python's strict end, as JSON Schema says it
    enum = done.get("enum")
    if enum and "type" not in done and all(isinstance(value, str) for value in enum):
        done["type"] = "string"
    return done


def _merge(base: Schema, extra: Schema) -> Schema:
    """`base` with `extra` laid over it, objects merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        merged[key] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return merged
