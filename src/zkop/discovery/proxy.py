"""An asyncio TCP proxy over a service's endpoint cache.

Each accepted connection is sent to an instance picked by the provider's strategy. When a
connect fails the instance is noted as erroring (the down-instance policy may take it out
for a while) and another one is tried, up to ``attempts`` times; then bytes are piped
both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from zkop.discovery.client import ServiceProvider
from zkop.discovery.instances import Instance


@dataclass
class ProxyStats:
    accepted: int = 0
    forwarded: int = 0
    connect_failures: int = 0
    refused: int = 0  # no instance could be reached


class Proxy:
    def __init__(
        self,
        provider: ServiceProvider,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        attempts: int = 3,
        connect_timeout: float = 1.0,
    ) -> None:
        self.provider = provider
        self.host = host
        self.port = port
        self.attempts = attempts
        self.connect_timeout = connect_timeout
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Instance] | None:
        """Connect to a picked instance; the instance stays acquired until released by the caller."""
        picker = self.provider.picker
        for _ in range(self.attempts):
            inst = picker.acquire()
            if inst is None:
                return None
            try:
                async with asyncio.timeout(self.connect_timeout):
                    r, w = await asyncio.open_connection(inst.host, inst.port)
            except (OSError, TimeoutError):
                self.stats.connect_failures += 1
                picker.release(inst, ok=False)  # counts towards the down-instance policy
                continue
            return r, w, inst
        return None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        upstream = await self._connect()
        if upstream is None:
            self.stats.refused += 1
            client_w.close()
            return
        up_r, up_w, inst = upstream
        self.stats.forwarded += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    if dst.can_write_eof():
                        dst.write_eof()

        try:
            await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        finally:
            self.provider.picker.release(inst, ok=True)
            for w in (up_w, client_w):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
