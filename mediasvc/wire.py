"""Requests into models, models into answers: the one place a body's problem becomes a 400.

msgspec decodes strictly against a model (mediasvc/models/); its error names the failing
field by path (`$.options.resize.width`), and `_refusal` turns that into the API's own wording
(the field's `says`). Three things msgspec does not do are done here, once:

* integral floats are integers (JSON Schema counts `800.0` as one, JavaScript cannot tell);
* limits that are settings are checked after decoding, against the running settings;
* form fields, tus metadata and query parameters are strings: integers and booleans are
  parsed from them before the same model checks the rest.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from mediasvc.errors import BadRequest
from mediasvc.models.base import Says
from mediasvc.settings import Settings

T = TypeVar("T", bound=msgspec.Struct)
Path = tuple[str | int, ...]
_ENCODER = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(
    r"^Object (?P<what>contains unknown|missing required) field `(?P<name>.*)`$", re.DOTALL
)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_FORM_INT = re.compile(r"-?[0-9]+(\.0*)?")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def encode(value: Any) -> bytes:
    """An answer as JSON."""
    return _ENCODER.encode(value)


def decode_json(model: type[T], body: bytes, settings: Settings) -> T:
    """A JSON body as `model`, or a 400 that names the field."""
    if not body:
        raise BadRequest("Request body must be a JSON object")
    try:
        value = msgspec.json.decode(body, type=model)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        value = _decode_slowly(model, body, settings)  # to tell why, or for integral floats
    check_limits(value, settings)
    return value


def decode_fields(model: type[T], fields: Mapping[str, str], settings: Settings) -> T:
    """Form fields, tus metadata or query parameters (all strings) as `model`."""
    rules = _rules(model)
    values: dict[str, Any] = {}
    for name, text in fields.items():
        kind = rules.kinds.get(name)
        if kind == "int" and text.strip() == "" and name not in rules.required:
            continue  # an empty optional number is absent
        values[name] = _from_text(model, name, kind, text, settings)
    value = _convert(model, values, settings)
    check_limits(value, settings)
    return value


def form_bool(text: str, name: str) -> bool:
    """A boolean from a form field: true/false, 1/0, yes/no, on/off; empty is false."""
    lowered = text.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise BadRequest(f"{name} must be true or false")


def canonical_uuid(text: str) -> str | None:
    """A UUID in canonical form, or None (a path id that is not one is a 404, not a 400)."""
    try:
        return str(uuid.UUID(text)) if len(text) <= 64 else None
    except ValueError:
        return None


# ---- decoding


def _decode_slowly(model: type[T], body: bytes, settings: Settings) -> T:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = _stdlib_json(body)  # lone surrogates: valid JSON, not valid text
    except RecursionError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return _convert(model, _integral(model, data, (), settings), settings)


def _stdlib_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("Request body is not valid JSON") from None


def _integral(model: type[Any], data: Any, path: Path, settings: Settings) -> Any:
    """`data` with integral floats as ints; a string that is not valid text is a 400."""
    if isinstance(data, float) and data.is_integer():
        return int(data)
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(_told(model, path, "unicode", data, settings)) from None
        return data
    if isinstance(data, dict):
        return {k: _integral(model, v, (*path, k), settings) for k, v in data.items()}
    if isinstance(data, list):
        return [_integral(model, v, (*path, i), settings) for i, v in enumerate(data)]
    return data


def _convert(model: type[T], data: dict[str, Any], settings: Settings) -> T:
    try:
        return msgspec.convert(data, model, strict=True)
    except msgspec.ValidationError as exc:
        raise BadRequest(_refusal(model, str(exc), data, settings)) from None


def _from_text(model: type[Any], name: str, kind: str | None, text: str, settings: Settings) -> Any:
    """A value from its text: integers as `3` or `3.0` (at most 12 digits), booleans as
    `form_bool` takes them; other values stay text for the model to check."""
    if kind == "bool":
        return form_bool(text, name)
    if kind == "int":
        stripped = text.strip()
        if not _FORM_INT.fullmatch(stripped):
            raise BadRequest(_told(model, (name,), "invalid", text, settings))
        digits = stripped.split(".", 1)[0]
        if len(digits.lstrip("-")) > 12:
            raise BadRequest(_told(model, (name,), "high", text, settings))
        return int(digits)
    return text.strip() if name in _rules(model).stripped else text


# ---- limits that are settings


def check_limits(value: msgspec.Struct, settings: Settings) -> None:
    """Apply the limits marked `limited_by(...)` to a decoded body, with the running values."""
    rules = _rules(type(value))
    for path, keyword, setting in rules.limits:
        found = _follow(value, path)
        if found is msgspec.UNSET or found is None:
            continue
        limit = int(getattr(settings, setting))
        if (found if keyword == "maximum" else len(found)) > limit:
            raise BadRequest(_told(type(value), path, "high", found, settings))
    for path in rules.non_empty:
        found = _follow(value, path)
        if isinstance(found, msgspec.Struct) and all(
            getattr(found, name) is msgspec.UNSET for name in found.__struct_fields__
        ):
            raise BadRequest(_told(type(value), path, "invalid", found, settings))


def _follow(value: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        value = getattr(value, name, None)
        if value is msgspec.UNSET or value is None:
            break
    return value


# ---- what a model declares


@dataclass(frozen=True)
class _Rules:
    kinds: dict[str, str]  # top-level fields parsed from text: "int" or "bool"
    required: frozenset[str]
    stripped: frozenset[str]  # top-level texts trimmed before they are checked
    limits: tuple[tuple[tuple[str, ...], str, str], ...]  # (path, keyword, setting)
    non_empty: tuple[tuple[str, ...], ...]  # objects that must have a field


_RULES: dict[type[Any], _Rules] = {}


def _rules(model: type[Any]) -> _Rules:
    """What decoding needs to know of a model, worked out once."""
    if model not in _RULES:
        _RULES[model] = _rules_of(model)
    return _RULES[model]


def _rules_of(model: type[Any]) -> _Rules:
    info = mi.type_info(model)
    assert isinstance(info, mi.StructType)
    kinds, stripped = {}, set()
    for f in info.fields:
        base, _, extra = _unwrap(f.type)
        if isinstance(base, (mi.IntType, mi.BoolType)):
            kinds[f.name] = "int" if isinstance(base, mi.IntType) else "bool"
        if extra.get("strip"):
            stripped.add(f.name)
    limits, non_empty = [], []
    for path, schema, extra in _walk(info, ()):
        for keyword, setting in schema.get("x-setting", {}).items():
            if extra.get("checked", True) and keyword != "default":
                limits.append((path, keyword, setting))
        if extra.get("non_empty"):
            non_empty.append(path)
    required = frozenset(f.name for f in info.fields if f.required)
    return _Rules(kinds, required, frozenset(stripped), tuple(limits), tuple(non_empty))


def _walk(
    info: mi.StructType, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]]:
    """Every field of a struct and of the structs inside it: (path, schema extras, extras)."""
    for f in info.fields:
        base, schema, extra = _unwrap(f.type)
        yield (*path, f.name), schema, extra
        if isinstance(base, mi.StructType):
            yield from _walk(base, (*path, f.name))


def _unwrap(t: mi.Type) -> tuple[mi.Type, dict[str, Any], dict[str, Any]]:
    """The type under metadata and `| None` / `| UNSET`, with the metadata gathered."""
    schema: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    while True:
        if isinstance(t, mi.Metadata):
            schema.update(t.extra_json_schema or {})
            extra.update(t.extra or {})
            t = t.type
        elif isinstance(t, mi.UnionType):
            t = next(m for m in t.types if not isinstance(m, mi.NoneType))  # UNSET is left out
        else:
            return t, schema, extra


# ---- telling what is wrong


def _refusal(model: type[Any], error: str, data: Any, settings: Settings) -> str:
    """A msgspec validation error (`Expected `str`, got `int` - at `$.title``) in the
    field's own words."""
    match = _AT.match(error)
    assert match is not None
    message = match["message"]
    path: Path = tuple(name or int(index) for name, index in _STEP.findall(match["path"] or ""))
    field = _FIELD.match(message)
    if field is not None:
        return _field_problem(model, path, field["what"], field["name"], data, settings)
    if not path:
        return "Request body must be a JSON object"
    kind = "invalid"
    if isinstance(path[-1], int):
        kind = "item"
    elif "matching regex" in message:
        kind = "pattern"
    elif ">" in message:
        kind = "low"
    elif "<" in message:
        kind = "high"
    return _told(model, path, kind, _value_at(data, path), settings)


def _field_problem(
    model: type[Any], path: Path, what: str, name: str, data: Any, settings: Settings
) -> str:
    """A missing or unknown field of the object at `path`."""
    holder = _object_at(model, path)
    assert isinstance(holder, mi.StructType)
    owner = holder.cls
    if getattr(owner, "says_shape", None) is not None:
        return _told(model, path, "invalid", _value_at(data, path), settings)
    if what == "missing required":
        return _told(model, (*path, name), "missing", None, settings)
    refused: dict[str, str] = getattr(owner, "refused", {})
    if name in refused:
        return refused[name]
    shown = getattr(owner, "shown_as", None)
    if shown is not None and name in shown.__struct_fields__:
        return f"Field '{name}' is read-only"
    printable = "".join(ch if ch.isprintable() else "?" for ch in name)
    return f"Unknown field '{printable[:64]}'"


def _object_at(model: type[Any], path: Path) -> mi.Type:
    """The type of the value at `path` (an item's, for a path into a list of objects)."""
    current: mi.Type = mi.type_info(model)
    for step in path:
        base = _unwrap(current)[0]
        if isinstance(step, int):
            current = base.item_type if isinstance(base, mi.ListType) else base
        else:
            assert isinstance(base, mi.StructType)
            current = next(f.type for f in base.fields if f.name == step)
    return _unwrap(current)[0]


def _field_type(
    model: type[Any], path: Path
) -> tuple[mi.Type, dict[str, Any], dict[str, Any], str]:
    """The type of the field at `path` (the list, for a path into its items), its schema
    extras and extras, and its name in messages (`options.resize.width`)."""
    current: mi.Type = mi.type_info(model)
    field: mi.Type = current
    names: list[str] = []
    for step in path:
        base = _unwrap(current)[0]
        if isinstance(step, int):
            current = base.item_type if isinstance(base, mi.ListType) else base
            continue
        assert isinstance(base, mi.StructType)
        if getattr(base.cls, "names_alone", False):
            names = []
        names.append(step)
        current = field = next(f.type for f in base.fields if f.name == step)
    base, schema, extra = _unwrap(field)
    return base, schema, extra, ".".join(names)


def _told(model: type[Any], path: Path, kind: str, value: Any, settings: Settings) -> str:
    """One problem of the field at `path`, worded by its `says`, else by its type."""
    base, schema, extra, name = _field_type(model, path)
    limit = _limit(base, schema, settings)
    wording = _wording(extra.get("says"), base, kind)
    return wording.format(name=name, limit=limit, value=str(value), choices=_choices(base))


def _wording(says: Says | None, base: mi.Type, kind: str) -> str:
    if kind == "missing":
        return (says.missing if says else None) or "{name} is required"
    if kind == "unicode":
        return "{name} is not valid Unicode"
    if says is not None:
        return getattr(says, kind, None) or says.invalid
    shape = getattr(base.cls, "says_shape", None) if isinstance(base, mi.StructType) else None
    return shape or _TYPE_WORDING.get(type(base), "{name} is not valid")


_TYPE_WORDING: dict[type, str] = {
    mi.StrType: "{name} must be a string",
    mi.IntType: "{name} must be an integer",
    mi.BoolType: "{name} must be true or false",
    mi.UUIDType: "{name} must be a UUID",
    mi.LiteralType: "{name} must be one of: {choices}",
    mi.EnumType: "{name} must be one of: {choices}",
    mi.StructType: "{name} must be an object",
    mi.ListType: "{name} must be a list",
}


def _limit(base: mi.Type, schema: dict[str, Any], settings: Settings) -> Any:
    """The field's upper limit: its setting's running value, else its constraint."""
    for keyword, setting in schema.get("x-setting", {}).items():
        if keyword != "default":
            return getattr(settings, setting)
    if isinstance(base, (mi.StrType, mi.ListType)):
        return base.max_length
    return base.le if isinstance(base, mi.IntType) else None


def _choices(base: mi.Type) -> str:
    if isinstance(base, mi.LiteralType):
        return ", ".join(str(v) for v in base.values)
    if isinstance(base, mi.EnumType):
        return ", ".join(str(member.value) for member in base.cls)
    return ""


def _value_at(data: Any, path: Path) -> Any:
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data
