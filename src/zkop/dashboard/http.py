"""The dashboard's HTTP side, on asyncio streams (no web framework): the page and its assets
(shipped in the package, nothing from the internet), the snapshot as JSON, and the live
updates as server-sent events. Read-only: only GET and HEAD are answered.

It runs on a server of its own (``zkop dashboard``) or behind the operator's health endpoint
(``zkop operator run --dashboard``): :meth:`DashboardHTTP.handle` takes a request another
server has already read.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from zkop.dashboard.auth import Guard
from zkop.dashboard.feed import Feed

ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
HEAD_TIMEOUT = 10.0
MAX_HEADERS = 100
HEARTBEAT = 15.0


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The request line and headers (lower-case names); None for something that is not HTTP."""
    async with asyncio.timeout(HEAD_TIMEOUT):
        line = await reader.readline()
        parts = line.decode("latin-1").split()
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return Request(parts[0].upper(), parts[1], headers)


def asset(name: str) -> bytes:
    return resources.files("zkop.dashboard").joinpath("static", name).read_bytes()


class DashboardHTTP:
    def __init__(self, feed: Feed, guard: Guard, *, heartbeat: float = HEARTBEAT) -> None:
        self.feed = feed
        self.guard = guard
        self.heartbeat = heartbeat

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection of a server of the dashboard's own (one request, then closed)."""
        try:
            try:
                request = await read_request(reader)
            except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
                return
            if request is None:
                await self._send(writer, 400, b"not an HTTP request\n")
                return
            await self.handle(request.method, request.target, request.headers, reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Answer one request whose head was read (the caller closes the connection)."""
        request = Request(method.upper(), target, headers)
        head_only = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            await self._send(writer, 405, b"the dashboard is read-only: GET only\n", extra=(("Allow", "GET, HEAD"),))
            return
        denied = self.guard.check(request.headers, request.query)
        if denied is not None:
            await self._send(writer, denied.status, denied.message.encode() + b"\n", head_only=head_only)
            return
        path = request.path
        if path in ASSETS:
            name, ctype = ASSETS[path]
            extra: tuple[tuple[str, str], ...] = ()
            cookie = self.guard.set_cookie()
            if name == "index.html" and cookie is not None and "token" in request.query:
                extra = (("Set-Cookie", cookie),)
            await self._send(writer, 200, asset(name), ctype=ctype, extra=extra, head_only=head_only)
        elif path == "/api/snapshot":
            if self.feed.payload is None:
                await self._send(writer, 503, b"no snapshot yet; retry\n", head_only=head_only)
            else:
                await self._send(writer, 200, self.feed.payload, ctype="application/json", head_only=head_only)
        elif path == "/events":
            if head_only:
                await self._send(writer, 200, b"", ctype="text/event-stream", head_only=True)
            else:
                await self._stream(reader, writer)
        else:
            await self._send(writer, 404, b"not found\n", head_only=head_only)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        ctype: str = "text/plain; charset=utf-8",
        extra: tuple[tuple[str, str], ...] = (),
        head_only: bool = False,
    ) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS[status]}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (*SECURITY_HEADERS, *extra)]
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body))
        await writer.drain()

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server-sent events: the newest snapshot now and after every change; a comment line
        every ``heartbeat`` seconds keeps proxies from closing an idle stream."""
        head = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "X-Accel-Buffering: no"]
        head += [f"{k}: {v}" for k, v in SECURITY_HEADERS]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + b"retry: 2000\n\n")
        await writer.drain()
        gone = asyncio.create_task(reader.read(1))  # the page went away (EOF)
        seen = 0
        try:
            while not self.feed.closed and not gone.done():
                if self.feed.version > seen and self.feed.payload is not None:
                    seen = self.feed.version
                    writer.write(b"event: snapshot\ndata: " + self.feed.payload + b"\n\n")
                    await writer.drain()
                waiter = asyncio.create_task(self.feed.wait(seen, self.heartbeat))
                await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    break
                if not waiter.result():
                    writer.write(b": ping\n\n")
                    await writer.drain()
        finally:
            gone.cancel()


__all__ = ["ASSETS", "DashboardHTTP", "Request", "asset", "read_request"]
