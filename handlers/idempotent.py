"""The handler side of `Idempotency-Key`: claim before the body, check once the request is
known, keep (or release) the key with the answer. The rules are the service's
(mediasvc/services/idempotency.py); this only ties them to Tornado's request cycle.

The answer to a keyed request is kept before it is sent: a client that saw a 201 always
finds it kept, even if the process dies right after. So `finish` is deferred by the one
database write that keeps the answer (or releases the key); a request without a key
finishes as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

import tornado.web

from mediasvc.errors import Unprocessable
from mediasvc.handlers.base import BaseHandler
from mediasvc.idempotency_records import KeptAnswer
from mediasvc.models.base import IdempotencyKeyText
from mediasvc.openapi import Header, Param
from mediasvc.services.idempotency import (
    KEPT_HEADERS,
    KEY_HEADER,
    REPLAY_HEADER,
    REUSED,
    Claim,
    json_fingerprint,
)

log = logging.getLogger("mediasvc.request")
P = ParamSpec("P")
H = TypeVar("H", bound="IdempotentHandler")

IDEMPOTENCY_KEY_PARAM = Param(
    KEY_HEADER,
    "header",
    IdempotencyKeyText,
    "Makes a retry safe: the same key with the same request by the same caller, within "
    "{idempotency_ttl} s, gets the first answer again (with `Idempotent-Replayed: true`); "
    "while the first still runs, 409; the same key with a different request, 422. 2xx and "
    "4xx answers are kept; 5xx, 408, 423, 425 and 429 are not (the key is free for the "
    'retry). A Structured Field string (`"..."`) or a bare token.',
)
REPLAYED_HEADER = Header("`true` on an answer kept for an earlier request with the same key")


@tornado.web.stream_request_body
class IdempotentHandler(BaseHandler):
    """A handler whose POST takes `Idempotency-Key`. Its method calls `replayed(fingerprint)`
    once the request is known (JSON handlers through `@idempotent`) and stops if it is True."""

    idempotency_route: ClassVar[str] = ""

    _claim: Claim | None = None
    _kept: KeptAnswer | None = None
    _fingerprint: str | None = None
    _settling: asyncio.Future[None] | None = None
    _renewal: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        await super().prepare()
        principal = self.authenticate()
        service = self.ctx.idempotency
        key = service.parse_key(self.request.headers.get_list(KEY_HEADER))
        if key is None:
            return
        outcome = await service.begin(principal.sub, self.idempotency_route, key)
        if isinstance(outcome, Claim):
            self._claim = outcome
            self._renewal = asyncio.create_task(self._renew(outcome), name="idempotency-lease")
        else:
            self._kept = outcome

    def replayed(self, fingerprint: Callable[[], str]) -> bool:
        """The request is known: with a kept answer, send it again (True) or refuse a
        different request (422); with a claim, remember what is being answered. The
        fingerprint is only worked out for a request that has a key."""
        if self._claim is not None:
            self._fingerprint = fingerprint()
            return False
        kept = self._kept
        if kept is None:
            return False
        if kept.fingerprint != fingerprint():
            raise Unprocessable(REUSED)
        self.set_status(kept.status)
        for name, value in kept.headers.items():
            self.set_header(name, value)
        self.set_header(REPLAY_HEADER, "true")
        self.finish(kept.body.encode())
        return True

    def json_fingerprint(self) -> str:
        """This JSON request's fingerprint: route, path arguments and body."""
        named = (f"{name}={value}" for name, value in sorted(self.path_kwargs.items()))
        path = (self.idempotency_route, *self.path_args, *named)
        return json_fingerprint(path, bytes(self._body or b""))

    # ---- the answer

    def finish(self, chunk: str | bytes | dict[Any, Any] | None = None) -> asyncio.Future[None]:
        if self._settling is not None:
            return self._settling
        claim, self._claim = self._claim, None
        if claim is None:
            return super().finish(chunk)
        if chunk is not None:
            self.write(chunk)
        self._stop_renewal()
        self._settling = self.ctx.idempotency.in_background(self._settle(claim))
        return self._settling

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        if self._settling is None:  # an answer already on its way is not replaced
            super().send_error(status_code, **kwargs)

    async def _settle(self, claim: Claim) -> None:
        try:
            await self.ctx.idempotency.end(claim, self._answer_to_keep())
        except Exception:
            log.warning("request %s: its idempotency key could not be settled", self.request_id,
                        exc_info=True)  # fmt: skip
        if not self._finished:
            super().finish()

    def _answer_to_keep(self) -> KeptAnswer | None:
        status = self.get_status()
        if self._fingerprint is None or not self.ctx.idempotency.keeps(status):
            return None
        try:
            body = b"".join(self._write_buffer).decode("utf-8")
        except UnicodeDecodeError:
            return None
        headers = {name: self._headers[name] for name in KEPT_HEADERS if name in self._headers}
        return KeptAnswer(status, headers, body, self._fingerprint)

    # ---- the lease

    async def _renew(self, claim: Claim) -> None:
        interval = self.ctx.settings.idempotency_lease / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.ctx.idempotency.renew(claim):
                    log.warning("request %s lost its idempotency key", self.request_id)
                    return
            except Exception as exc:  # the database may be back before the lease is over
                log.info("request %s could not renew its idempotency key: %s",
                         self.request_id, exc)  # fmt: skip

    def _stop_renewal(self) -> None:
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.cancel()

    def on_connection_close(self) -> None:
        # Gone before its body was in: the request will not run, its key is free again. (Once
        # the body is in, the request runs to its end and keeps its answer.)
        claim = self._claim
        if claim is not None and not self.request._body_future.done():
            self._claim = None
            self._stop_renewal()
            self.ctx.idempotency.in_background(self._release(claim))
        super().on_connection_close()

    async def _release(self, claim: Claim) -> None:
        try:
            await self.ctx.idempotency.end(claim, None)
        except Exception as exc:  # the lease frees it anyway
            log.info("request %s could not release its idempotency key: %s",
                     self.request_id, exc)  # fmt: skip


def idempotent(
    method: Callable[Concatenate[H, P], Awaitable[None]],
) -> Callable[Concatenate[H, P], Coroutine[Any, Any, None]]:
    """A JSON POST method that answers a keyed retry with the kept answer."""

    @functools.wraps(method)
    async def answer(self: H, /, *args: P.args, **kwargs: P.kwargs) -> None:
        if not self.replayed(self.json_fingerprint):
            await method(self, *args, **kwargs)

    return answer
