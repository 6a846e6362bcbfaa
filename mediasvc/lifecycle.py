"""Counting what is in flight, so a stopping process can drain and a busy one push back."""

from __future__ import annotations

import asyncio
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
