"""A TCP forwarder between a client and the service, on a loopback port of its own, that
behaves like a real network: it counts the bytes clients send, can hold them to a rate, and
can cut every open connection once, mid-request, after a number of bytes."""

from __future__ import annotations

import asyncio
import contextlib

PIECE = 64 * 1024


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target` (run in the test's event loop)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.uploaded = 0  # bytes clients sent through us
        self.rate: float | None = None  # bytes a second, clients to the service
        self.cut_at: int | None = None  # cut every connection once `uploaded` passes this
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        self._cut()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, upstream=True),
                self._pump(up_reader, writer, upstream=False),
            )
        finally:
            for each in (writer, up_writer):
                self._writers.discard(each)
                each.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(PIECE):
                if upstream:
                    await self._account(len(data))
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()

    async def _account(self, count: int) -> None:
        self.uploaded += count
        if self.rate:
            await asyncio.sleep(count / self.rate)
        if self.cut_at is not None and self.uploaded >= self.cut_at:
            self.cut_at = None
            self.cuts += 1
            self._cut()

    def _cut(self) -> None:
        """Every open connection dropped at once, both ways, with a reset."""
        for writer in list(self._writers):
            writer.transport.abort()
