"""Idempotency keys (the IETF httpapi draft "The Idempotency-Key HTTP Header Field").

A request that carries `Idempotency-Key` claims the key for its caller (the token's `sub`)
and route before its body is read. While it runs, a request with the same key gets 409 at
once. When it ends, its answer is kept for `idempotency_ttl` seconds together with a
fingerprint of the request, and a retry with the same key gets that answer again if it is
the same request (same fingerprint), or 422 if it is not.

Which answers are kept: 2xx and 4xx, as the draft advises, except those that only say
"try again" (408, 423, 425, 429), and only once the request was known in full (a request
refused before its body was read has no fingerprint). 5xx answers are not kept: the key
is released and the client's retry runs again. A claim has a lease (`idempotency_lease`),
renewed while the request runs, so the key of a request whose process died is free again
once the lease has run out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mediasvc.errors import BadRequest, Conflict
from mediasvc.idempotency_records import IdempotencyRepository, KeptAnswer, KeyState, key_id
from mediasvc.records import now_ms
from mediasvc.settings import Settings

KEY_HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = ("Location", "Content-Type")
RETRY_STATUSES = frozenset({408, 423, 425, 429})  # answers that only say "try again"
IN_PROGRESS = "A request with this Idempotency-Key is still in progress; try again shortly"
REUSED = "This Idempotency-Key was already used for a different request"
_ATTEMPTS = 5  # claims that lose a race for an expired key look again this often
_SF_STRING = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
_TOKEN = re.compile(r"^[\x21\x23-\x7e]+$")


@dataclass(frozen=True)
class Claim:
    """A keyed request's hold on its key, until it ends or its lease runs out."""

    record_id: str
    token: str


def parse_key(values: Sequence[str], max_length: int) -> str | None:
    """The key of the `Idempotency-Key` header values, None without one, else a 400.

    The draft's key is a Structured Field string (`"8e03978e-..."`); a bare token
    (`8e03978e-...`), as many clients send it, is taken as its content."""
    if not values:
        return None
    problem = f"{KEY_HEADER} must be one string of 1 to {max_length} printable ASCII characters"
    if len(values) > 1:
        raise BadRequest(problem)
    text = values[0].strip(" \t")
    quoted = _SF_STRING.fullmatch(text)
    if quoted:
        key = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif _TOKEN.fullmatch(text):
        key = text
    else:
        raise BadRequest(problem)
    if not key or len(key) > max_length:
        raise BadRequest(problem)
    return key


def digest(*parts: str | bytes) -> str:
    """A sha256 over parts kept apart (no two sequences of parts digest alike)."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        hasher.update(f"{len(data)}:".encode())
        hasher.update(data)
    return hasher.hexdigest()


def json_fingerprint(path_args: Iterable[str], body: bytes) -> str:
    """A JSON request: its path arguments and its body, the same however its keys are ordered
    or spaced (a body that is no JSON: its bytes)."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        canonical = body
    return digest("json", *path_args, "", canonical)


def form_fingerprint(
    fields: Mapping[str, str],
    files: Iterable[tuple[str, str, int]],
    rejected: Iterable[Mapping[str, str]],
) -> str:
    """A multipart request: its fields in any order, and each file's name, sha256 and size
    in order (the boundary and the order of the parts do not count); files refused while
    streaming count by their name and the reason."""
    parts: list[str] = ["form"]
    for name in sorted(fields):
        parts += [name, fields[name]]
    for filename, sha256, size in files:
        parts += ["file", filename, sha256, str(size)]
    for refused in rejected:
        parts += ["refused", refused.get("filename", ""), refused.get("error", "")]
    return digest(*parts)


class IdempotencyService:
    """Claims, kept answers and their sweep; the handlers' helper (handlers/idempotent.py)
    calls it at the start and at the end of every keyed request."""

    def __init__(
        self,
        records: IdempotencyRepository,
        settings: Settings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.records = records
        self.settings = settings
        self.clock = clock
        self._background: set[asyncio.Future[None]] = set()

    @property
    def lease_ms(self) -> int:
        return int(self.settings.idempotency_lease * 1000)

    def parse_key(self, values: Sequence[str]) -> str | None:
        """The request's key (see `parse_key`), within `idempotency_key_max_length`."""
        return parse_key(values, self.settings.idempotency_key_max_length)

    async def begin(self, sub: str, route: str, key: str) -> Claim | KeptAnswer:
        """Claim the key for a request, or the answer kept for it; 409 while another request
        holds it. An expired key is taken over with one conditional update, so of two
        retries racing for it one wins and the other gets the 409."""
        record_id = key_id(sub, route, key)
        for _ in range(_ATTEMPTS):
            now, token = self.clock(), uuid.uuid4().hex
            until = now + self.lease_ms
            owner = {"sub": sub, "route": route}
            if await self.records.insert_claim(record_id, token, until, now, owner):
                return Claim(record_id, token)
            found = await self.records.get(record_id)
            if found is None:
                continue  # released or swept in between
            if found.expires_at <= now:
                if await self.records.take_over(record_id, found.claim, token, until, now):
                    return Claim(record_id, token)
                continue
            if found.state is KeyState.DONE and found.answer is not None:
                return found.answer
            raise Conflict(IN_PROGRESS)
        raise Conflict(IN_PROGRESS)

    async def renew(self, claim: Claim) -> bool:
        """Extend the lease of a running request; False if the key is no longer its own."""
        return await self.records.renew(claim.record_id, claim.token, self.clock() + self.lease_ms)

    def keeps(self, status: int) -> bool:
        """Whether an answer with this status is kept for retries (see the module's doc)."""
        return 200 <= status < 500 and status not in RETRY_STATUSES

    async def end(self, claim: Claim, answer: KeptAnswer | None) -> None:
        """The request has its answer: keep it for `idempotency_ttl`, or (None) free the key."""
        if answer is None:
            await self.records.release(claim.record_id, claim.token)
            return
        until = self.clock() + self.settings.idempotency_ttl * 1000
        await self.records.keep(claim.record_id, claim.token, answer, until)

    def in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run the settling of a key on its own, held here until it is done (the request
        that started it may be gone: its client left)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def sweep(self) -> dict[str, int]:
        """Delete the keys whose answers or leases have run out."""
        return {"expired_idempotency_keys": await self.records.delete_expired(self.clock())}
