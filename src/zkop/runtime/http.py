"""A tiny HTTP endpoint for /metrics, /healthz and /readyz (loopback by default); other paths
go to a ``fallback`` handler when one is given (the dashboard)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

#: Answers a request for another path: (method, target, headers with lower-case names, the
#: connection's reader and writer). It may stream; the server closes the connection after it.
Fallback = Callable[[str, str, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OWN_PATHS = ("/metrics", "/healthz", "/readyz")


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ready: Callable[[], bool],
        healthy: Callable[[], bool] = lambda: True,
        host: str = "127.0.0.1",
        port: int = 0,
        fallback: Fallback | None = None,
    ) -> None:
        self.registry = registry
        self.fallback = fallback
        self.ready = ready
        self.healthy = healthy
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            if self.fallback is not None and path not in OWN_PATHS and len(parts) >= 2:
                await self.fallback(parts[0], parts[1], headers, reader, writer)
                return
            if path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
            elif path == "/healthz":
                ok = self.healthy()
                status, ctype, body = (200 if ok else 503), "text/plain", b"ok\n" if ok else b"unhealthy\n"
            elif path == "/readyz":
                ok = self.ready()
                status, ctype, body = (200 if ok else 503), "text/plain", b"ok\n" if ok else b"not ready\n"
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
