"""List queries: what a caller asks for and may see, and the index-served shapes that answer it.

A list is answered by one query per *visibility branch* (the caller's uploads, its own user
entity, each entity or entity type it holds a grant for), each a flat filter of explicit
`$eq` terms on an indexed prefix, sorted by the stored `sort_key`, merged here by that key.
Flat `$eq` filters sorted on one indexed key are what every MongoDB-wire server serves from
an index; `$or`/`$and` in a find and implicit equalities are not (see docs/operations.md,
"The embedded database").

The branches used to *fetch* are disjoint (the uploads branch leaves out entities another
branch covers), so merging never sees a record twice. *Counting* uses the cheapest exact
shape (a `Count`): a whole entity type, a whole media type or everything is a total the
repository maintains; other records are counted with one `count` of an `$or` of plain `$eq`
arms (an `$or` counts each record once and is index-served), minus the caller's uploads that
a maintained total has counted already; a search counts each disjoint branch, and a branch
whose fetch read it whole counts itself.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from mediasvc.errors import BadRequest
from mediasvc.records import SORT_KEY, Doc, MediaRecord


@dataclass(frozen=True)
class Visibility:
    """What a caller that is not admin may see: its own uploads, the entities it may act
    on (its user entity among them) and whole entity types it holds a `type:*` grant for."""

    uploader: str
    entities: frozenset[tuple[str, str]]
    entity_types: frozenset[str]

    def covers(self, entity_type: str, entity_id: str) -> bool:
        """Whether every media of this entity is visible (not only the caller's uploads)."""
        return entity_type in self.entity_types or (entity_type, entity_id) in self.entities


@dataclass(frozen=True)
class Cursor:
    """A position in list order: after (or, for `previous` links, before) one sort key."""

    key: str
    before: bool = False

    def encode(self) -> str:
        raw = ("b" if self.before else "a") + self.key
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor of a `next`/`previous` link; anything else is a 400."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise BadRequest("cursor is not valid") from None
        if len(text) > 200 or raw[:1] not in ("a", "b") or not SORT_KEY.fullmatch(raw[1:]):
            raise BadRequest("cursor is not valid")
        return cls(raw[1:], before=raw[0] == "b")


@dataclass(frozen=True)
class MediaFilters:
    """The list's filters, each an exact value or None."""

    entity_type: str | None = None
    entity_id: str | None = None
    media_type: str | None = None
    status: str | None = None

    def items(self) -> list[tuple[str, str]]:
        """The filters that are set, as (field, value)."""
        values = (
            ("entity_type", self.entity_type),
            ("entity_id", self.entity_id),
            ("media_type", self.media_type),
            ("status", self.status),
        )
        return [(name, value) for name, value in values if value is not None]


@dataclass(frozen=True)
class MediaQuery:
    """A validated list request: filters, search text, who asks, and which page."""

    filters: MediaFilters
    search: str
    visibility: Visibility | None  # None: an admin, who sees everything
    limit: int
    offset: int = 0
    cursor: Cursor | None = None


@dataclass(frozen=True)
class MediaPage:
    """One page in list order, how many match in all, and whether the query's direction
    (forward, or backward for a `before` cursor) has more beyond this page."""

    items: list[MediaRecord]
    count: int
    has_more: bool


Total = tuple[str, str]  # a maintained total: ("entity_types", "user"), ("media_types", "video")
ALL: Total = ("all", "")  # every record


@dataclass(frozen=True)
class Count:
    """How a query's total is made: maintained totals plus the counts of disjoint filters."""

    totals: tuple[Total, ...] = ()
    add: tuple[Doc, ...] = ()
    by_branch: bool = False  # `add` are the fetch branches, in order: one read whole counts itself


@dataclass(frozen=True)
class Plan:
    """The database filters that answer a query."""

    fetch: list[Doc]  # disjoint branches, merged by sort key
    count: Count


def _eq(value: str) -> Doc:
    return {"$eq": value}


def contains(field: str, text: str) -> Doc:
    """A literal substring match on a stored field, as an `$expr`: the same on every server,
    and one the embedded server evaluates in SQL (`instr`), where a `$regex` is a Python call
    per record (and the `$options` flag a Python scan of the whole collection)."""
    return {"$gte": [{"$indexOfCP": [f"${field}", text]}, 0]}


def plan(query: MediaQuery) -> Plan:
    """The branch filters of a query: fetched one by one and merged, counted as cheaply as
    stays exact."""
    base: Doc = {name: _eq(value) for name, value in query.filters.items()}
    if query.search:
        base["$expr"] = contains("search_text", query.search.lower())
    visibility = query.visibility
    if visibility is None or _one_covered_entity(query.filters, visibility):
        branch = _facets_narrowing(base)
        if set(branch) == {"$expr"}:  # everything searched: see _EVERY_KEY
            branch["sort_key"] = _EVERY_KEY
        return Plan([branch], _count_of(branch))
    grants = [_facets_narrowing(arm) for arm in _grant_arms(base, query.filters, visibility)]
    uploads = _uploads_arm(base, query.filters, visibility)
    fetch = [*grants, *([_facets_narrowing(uploads)] if uploads is not None else [])]
    if len(fetch) == 1:
        return Plan(fetch, _count_of(fetch[0]))
    if query.search:
        return Plan(fetch, Count(add=tuple(fetch), by_branch=True))
    # No `$nin` in a count: its `$or` counts a record once however many arms match it, and
    # an arm that does not translate to SQL makes the whole count a Python scan.
    plain = _facets_narrowing({**base, "uploaded_by": _eq(visibility.uploader)})
    if query.filters.items():
        return Plan(fetch, Count(add=(_any_of([*grants, plain]),)))
    return Plan(fetch, _unfiltered_count(grants, plain, visibility))


def _unfiltered_count(grants: list[Doc], plain: Doc, visibility: Visibility) -> Count:
    """Everything a caller may see: each granted type's maintained total, and one `$or` of
    the other entities and of the caller's uploads outside the granted types (the entity
    arms never lie in one). "Outside" is a range between two granted types, not a `$nin`:
    each arm then translates to SQL and the embedded server's count stays index-served."""
    types = sorted(visibility.entity_types)
    entities = [arm for arm in grants if "entity_id" in arm]
    uploads = [{**plain, "entity_type": gap} for gap in _gaps(types)] if types else [plain]
    return Count(
        totals=tuple(("entity_types", entity_type) for entity_type in types),
        add=(_any_of([*entities, *uploads]),),
    )


def _gaps(values: list[str]) -> list[Doc]:
    """String ranges that together hold every string but these values (sorted, not none)."""
    bounds: list[Doc] = [{"$lt": values[0]}]
    bounds += [{"$gt": low, "$lt": high} for low, high in pairwise(values)]
    return [*bounds, {"$gt": values[-1]}]


def _count_of(branch: Doc) -> Count:
    """One branch's count: a maintained total when the branch is a whole one."""
    if not branch:
        return Count(totals=(ALL,))
    if len(branch) == 1:
        ((name, condition),) = branch.items()
        if name in ("entity_type", "media_type") and set(condition) == {"$eq"}:
            return Count(totals=((f"{name}s", condition["$eq"]),))
    return Count(add=(branch,), by_branch=True)


def _any_of(arms: list[Doc]) -> Doc:
    return arms[0] if len(arms) == 1 else {"$or": arms}


def _facets_narrowing(branch: Doc) -> Doc:
    """A branch whose facet equalities (media type, status) only narrow it.

    Alone, a facet is the branch (an admin's `media_type=video`: its own index serves it).
    Beside the branch's own equality (an entity, an uploader, an entity type) it is written
    as a one-value range: the same match on every server, but a planner without statistics
    (the embedded server's SQLite) then keeps the branch's index instead of picking the
    facet's, which can match a quarter of the collection."""
    if not set(branch) & _BRANCH_FIELDS:
        return branch
    narrowed = dict(branch)
    for name in _FACETS:
        if name in narrowed:
            value = narrowed[name]["$eq"]
            narrowed[name] = {"$gte": value, "$lte": value}
    return narrowed


# A range every sort key is in. Beside a search over everything it changes no answer, but
# the embedded server's SQLite then walks the (sort key, search text) index instead of the
# records: an admin's search of 200,000 records counted in 77 ms instead of 1.4 s.
_EVERY_KEY: Doc = {"$gte": ""}
_FACETS = ("media_type", "status")
_BRANCH_FIELDS = {"entity_type", "entity_id", "uploaded_by"}


def _one_covered_entity(filters: MediaFilters, visibility: Visibility) -> bool:
    return (
        filters.entity_type is not None
        and filters.entity_id is not None
        and visibility.covers(filters.entity_type, filters.entity_id)
    )


def _grant_arms(base: Doc, filters: MediaFilters, visibility: Visibility) -> list[Doc]:
    """One arm per entity type granted whole, then one per entity, within the filters."""
    arms: list[Doc] = []
    for entity_type in sorted(visibility.entity_types):
        if filters.entity_type in (None, entity_type):
            arms.append({**base, "entity_type": _eq(entity_type)})
    for entity_type, entity_id in sorted(visibility.entities):
        if entity_type in visibility.entity_types:
            continue  # its type's arm has it
        if filters.entity_type in (None, entity_type) and filters.entity_id in (None, entity_id):
            arms.append({**base, "entity_type": _eq(entity_type), "entity_id": _eq(entity_id)})
    return arms


def _uploads_arm(base: Doc, filters: MediaFilters, visibility: Visibility) -> Doc | None:
    """The caller's uploads to entities no grant arm covers (None: there can be none)."""
    if filters.entity_type in visibility.entity_types:
        return None
    arm = {**base, "uploaded_by": _eq(visibility.uploader)}
    types = sorted(visibility.entity_types)
    if types and filters.entity_type is None:
        arm["entity_type"] = {"$nin": types}
    slots = sorted(
        f"{entity_type}:{entity_id}"
        for entity_type, entity_id in visibility.entities
        if entity_type not in visibility.entity_types
        and filters.entity_type in (None, entity_type)
        and filters.entity_id in (None, entity_id)
    )
    if slots:
        arm["entity_slot"] = {"$nin": slots}
    return arm


def probe(branches: list[Doc]) -> Doc:
    """One filter whose records' entity slots tell which of these branches have records
    (`holding`): each branch without its `$nin` terms, which keeps every record of it and
    lets the `$or` translate to SQL, where one index search serves each arm."""
    return _any_of([{k: v for k, v in b.items() if "$nin" not in v} for b in branches])


def holding(branches: list[Doc], slots: Iterable[str]) -> list[Doc]:
    """The branches that may have records in these entity slots (`<type>:<id>`)."""
    entities = [tuple(slot.split(":", 1)) for slot in slots]
    return [b for b in branches if any(_may_hold(b, t, i) for t, i in entities)]


def _may_hold(branch: Doc, entity_type: str, entity_id: str) -> bool:
    """Whether the branch's entity terms allow this entity (a term it does not know: yes)."""
    values = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "entity_slot": f"{entity_type}:{entity_id}",
    }
    for name, value in values.items():
        term = branch.get(name, {})
        if ("$eq" in term and term["$eq"] != value) or value in term.get("$nin", ()):
            return False
    return True


def window(query: MediaQuery) -> tuple[Doc, int, int]:
    """For each branch: the sort-key range (a cursor), how many to skip and to fetch.

    One more than the page is fetched to know whether there is more. With several branches
    an offset cannot be skipped in the database: each branch fetches offset + page and the
    merge skips (a cursor stays cheap at any depth)."""
    key_range: Doc = {}
    if query.cursor is not None:
        key_range = {"$lt" if query.cursor.before else "$gt": query.cursor.key}
    return key_range, query.offset, query.limit + 1


def with_range(branch: Doc, key_range: Doc) -> Doc:
    """A branch narrowed to a sort-key range (no-op without a cursor)."""
    return {**branch, "sort_key": key_range} if key_range else branch


def merge(pages: Iterable[list[MediaRecord]], descending: bool) -> list[MediaRecord]:
    """Branch results (each already in order) merged into one list order."""
    merged = heapq.merge(*pages, key=lambda media: media.sort_key, reverse=descending)
    return list(merged)
