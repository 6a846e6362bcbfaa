"""Counting what is in flight, so a stopping process can drain and a busy one push back."""

from __future__ import annotations

import asyncio
import collections
import contextlib


class InFlight:
    """A count of things in progress, with a way to wait until there are none."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        """One more in progress."""
        self.count += 1
        self._idle.clear()

    def end(self) -> None:
        """One fewer in progress."""
        self.count = max(0, self.count - 1)
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in progress; False if `timeout` passed first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self.count == 0


class Slots:
    """At most `limit` holders at once; the others wait in line, each up to its deadline.

    Waiting is what gives backpressure: an upload waiting here has not had its body read,
    so its client is held back by TCP instead of being refused at once.
    """

    def __init__(self) -> None:
        self.count = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, limit: int, timeout: float) -> bool:
        """Take a slot, waiting up to `timeout` seconds; False if none came free in time."""
        if self.count < limit and not self._waiters:
            self.count += 1
            return True
        if timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if _handed_over(waiter):  # at the very last moment
                return True
            self._forget(waiter)
            return False
        except asyncio.CancelledError:
            if _handed_over(waiter):
                self.release()
            self._forget(waiter)
            raise
        return True

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Give the slot to the first one waiting, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the count stays: the slot changes hands
                return
        self.count = max(0, self.count - 1)


def _handed_over(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()
