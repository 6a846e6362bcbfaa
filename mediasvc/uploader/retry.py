"""When to try again: exponential backoff with jitter, or what the server's `Retry-After`
says. Jitter keeps the workers of one run (and the clients of a busy server) from all coming
back in the same instant after a 429 or a restart."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mediasvc.uploader.http import Stopped
from mediasvc.uploader.tus import Retryable

T = TypeVar("T")


class GaveUp(Exception):
    """Still failing after every attempt; the message is the last reason."""


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries after the first, waiting `base` * 2**n seconds (half of it random),
    at most `cap`; a `Retry-After` is honoured up to `longest`."""

    attempts: int = 8
    base: float = 0.5
    cap: float = 30.0
    longest: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number `attempt` + 1 (`attempt` counts from 1)."""
        jitter = random.uniform(0, self.base)
        if retry_after is not None:
            return min(retry_after, self.longest) + jitter
        ceiling = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class Retrier:
    """Runs actions under one backoff, counting the retries and stopping when asked."""

    backoff: Backoff
    stop: threading.Event
    retries: int = 0
    on_retry: Callable[[str, float], None] | None = None

    def pause(self, attempt: int, problem: Retryable) -> None:
        """Wait before the next attempt, or GaveUp / Stopped."""
        if attempt > self.backoff.attempts:
            raise GaveUp(f"gave up after {attempt} attempts: {problem}")
        self.retries += 1
        seconds = self.backoff.delay(attempt, problem.retry_after)
        if self.on_retry is not None:
            self.on_retry(str(problem), seconds)
        if self.stop.wait(seconds):
            raise Stopped

    def run(self, action: Callable[[], T]) -> T:
        """`action()`, tried again after each Retryable until it succeeds or we give up."""
        attempt = 0
        while True:
            try:
                return action()
            except Retryable as problem:
                attempt += 1
                self.pause(attempt, problem)
