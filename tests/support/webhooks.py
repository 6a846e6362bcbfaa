"""A webhook receiver on a loopback port, in a thread of its own (so it answers while a test
blocks on a subprocess): each hook is a path with a script of answers, and every request it
gets is verified with the `standardwebhooks` package against the hook's secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web
from standardwebhooks import Webhook, WebhookVerificationError

from mediasvc.embedded_db import free_loopback_port

HUGE_BYTES = 64 * 1024 * 1024
HANG_SECONDS = 30.0


@dataclass
class Received:
    """One request a hook got: its headers, body, and which secrets its signature matched."""

    headers: dict[str, str]
    body: bytes
    verified: list[str]

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Hook:
    """A receiving path: what it answers, in turn (the last answer repeats), and what came.

    An answer is a status code, or "hang" (never answer), "huge" (200 with a 64 MiB body),
    ("redirect", url), ("status", code, headers)."""

    name: str
    url: str
    answers: list[Any]
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    cut: bool = False  # a huge answer was cut off by the sender
    _served: int = 0

    def next_answer(self) -> Any:
        answer = self.answers[min(self._served, len(self.answers) - 1)]
        self._served += 1
        return answer

    def verify(self, headers: dict[str, str], body: bytes) -> list[str]:
        """The secrets whose signature the request carries (checked by the reference library)."""
        matched = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            matched.append(secret)
        return matched

    def events(self, media_id: str | None = None) -> list[Received]:
        """What came for one media (all, without `media_id`)."""
        return [r for r in self.received if media_id is None or r.payload["data"]["id"] == media_id]

    def wait_for(
        self, check: Callable[[list[Received]], bool], timeout: float = 20
    ) -> list[Received]:
        """Block until `check(received)` holds (or fail the test)."""
        deadline = time.monotonic() + timeout
        while not check(list(self.received)):
            assert time.monotonic() < deadline, f"hook {self.name} got {self.summary()}"
            time.sleep(0.02)
        return list(self.received)

    async def until(
        self, check: Callable[[list[Received]], bool], timeout: float = 20
    ) -> list[Received]:
        """`wait_for` without blocking the event loop (the service under test runs on it)."""
        deadline = time.monotonic() + timeout
        while not check(list(self.received)):
            assert time.monotonic() < deadline, f"hook {self.name} got {self.summary()}"
            await asyncio.sleep(0.02)
        return list(self.received)

    def summary(self) -> list[tuple[str, str]]:
        return [(r.payload["type"], r.webhook_id) for r in self.received]


class _HookHandler(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def post(self, name: str) -> None:
        hook = self.receiver.hooks[name]
        headers = {key.lower(): value for key, value in self.request.headers.get_all()}
        body = self.request.body
        hook.received.append(Received(headers, body, hook.verify(headers, body)))
        answer = hook.next_answer()
        if answer == "hang":  # until the receiver stops (or the sender goes away)
            stopped = self.receiver.stopped
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), HANG_SECONDS)
        elif answer == "huge":
            await self._huge(hook)
        elif isinstance(answer, tuple) and answer[0] == "redirect":
            self.redirect(answer[1], status=302)
        elif isinstance(answer, tuple):  # ("status", code, headers)
            self.set_status(answer[1])
            for name, value in answer[2].items():
                self.set_header(name, value)
            self.finish("{}")
        else:
            self.set_status(int(answer))
            self.finish("{}")

    async def _huge(self, hook: Hook) -> None:
        self.set_status(200)
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(HUGE_BYTES // len(chunk)):
                self.write(chunk)
                await self.flush()
            self.finish()
        except tornado.iostream.StreamClosedError:
            hook.cut = True


class Receiver:
    """The receiving server: `start()` it (again after `stop()`, on the same port)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.hooks: dict[str, Hook] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def stopped(self) -> asyncio.Event:
        assert self._stopped is not None
        return self._stopped

    def hook(self, name: str, *answers: Any, host: str = "127.0.0.1") -> Hook:
        """A new path of this receiver that answers `answers` in turn (200 if none)."""
        hook = Hook(name, f"http://{host}:{self.port}/hooks/{name}", list(answers) or [200])
        self.hooks[name] = hook
        return hook

    def start(self) -> Receiver:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = self._stopped = None

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        app = tornado.web.Application([(r"/hooks/([^/]+)", _HookHandler, {"receiver": self})])
        server = tornado.httpserver.HTTPServer(app)
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setblocking(False)
        server.add_sockets([listener])
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        ready.set()
        await self._stopped.wait()
        server.stop()
        await server.close_all_connections()


def of_type(received: list[Received], media_id: str, event_type: str) -> list[Received]:
    """The deliveries of one type of event of one media, as they came."""
    return [
        r
        for r in received
        if r.payload["type"] == event_type and r.payload["data"]["id"] == media_id
    ]


def has(media_id: str, *types: str) -> Callable[[list[Received]], bool]:
    """A check for `Hook.until`: every one of these event types of the media came."""
    return lambda received: all(of_type(received, media_id, kind) for kind in types)
