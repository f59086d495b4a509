"""The member file agent: how the operator reaches a member Pod's data without ``pods/exec``.

Each member Pod runs it beside ZooKeeper (container ``files``, the operator's image, the data
volume read-only), so a backup copies the member's snapshots and transaction logs while it
serves. The first member of a cluster restored from a backup runs it once more as an init step
(``seed``, the volume writable) that receives the backup's files before ZooKeeper starts; on a
volume that holds data already it ends at once, so a restarted Pod is never seeded twice.

HTTP on :data:`PORT`, every request with ``Authorization: Bearer <token>`` (the cluster
Secret's ``files-token``). With the cluster's TLS on, it serves TLS with the member's certificate
and asks for a client certificate of the cluster's CA.

  GET  /v1/files         {"files": [{"name", "size"}]}: the snapshots and logs in ``version-2``
  GET  /v1/files/NAME    the file as it is when opened (a log being written may grow after)
  PUT  /v1/files/NAME    seed only: the body, stored when its sha256 is the X-Sha256 header's
  POST /v1/done          seed only: every file is there; the init step ends
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from zkop.errors import ZkopError
from zkop.zk.txnlog import VERSION_DIR

PORT = 9141
TOKEN_ENV = "ZKOP_FILES_TOKEN"
NAME = re.compile(r"^(snapshot|log)\.[0-9a-f]+$")
CHUNK = 1 << 20


class FilesError(ZkopError):
    """The member's file agent refused or could not be reached."""


def data_names(vdir: Path) -> list[tuple[str, int]]:
    if not vdir.is_dir():
        return []
    out = []
    for entry in sorted(vdir.iterdir()):
        if NAME.match(entry.name):
            with contextlib.suppress(OSError):
                out.append((entry.name, entry.stat().st_size))
    return out


def server_context(pem: Path, truststore: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(pem))
    ctx.load_verify_locations(cafile=str(truststore))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Agent:
    """The server. ``seed``: receive files into an empty ``version-2`` and end on /v1/done."""

    def __init__(self, data: Path, token: str, *, seed: bool = False) -> None:
        self.vdir = data / VERSION_DIR
        self.token = token
        self.seed = seed
        self.done = asyncio.Event()

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                raise web.HTTPUnauthorized(text="a bearer token is required (the cluster Secret's files-token)\n")
            result: web.StreamResponse = await handler(request)
            return result

        app = web.Application(middlewares=[auth], client_max_size=1 << 40)
        app.router.add_get("/v1/files", self.list)
        app.router.add_get("/v1/files/{name}", self.get)
        if self.seed:
            app.router.add_put("/v1/files/{name}", self.put)
            app.router.add_post("/v1/done", self.finish)
        return app

    def _name(self, request: web.Request) -> str:
        name = request.match_info["name"]
        if not NAME.match(name):
            raise web.HTTPBadRequest(text=f"{name!r} is not a snapshot or log name\n")
        return name

    async def list(self, request: web.Request) -> web.Response:
        files = await asyncio.to_thread(data_names, self.vdir)
        return web.json_response({"files": [{"name": n, "size": s} for n, s in files]})

    async def get(self, request: web.Request) -> web.StreamResponse:
        path = self.vdir / self._name(request)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise web.HTTPNotFound(text=f"{path.name} is gone (purged?)\n") from None
        with fh:
            size = os.fstat(fh.fileno()).st_size  # what was written when it was opened
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = size
            await response.prepare(request)
            left = size
            while left > 0:
                chunk = await asyncio.to_thread(fh.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                await response.write(chunk)
            await response.write_eof()
            return response

    async def put(self, request: web.Request) -> web.Response:
        name = self._name(request)
        expected = request.headers.get("X-Sha256", "")
        self.vdir.mkdir(parents=True, exist_ok=True)
        part = self.vdir / f".{name}.part"
        digest = hashlib.sha256()
        with part.open("wb") as fh:
            async for chunk in request.content.iter_chunked(CHUNK):
                digest.update(chunk)
                await asyncio.to_thread(fh.write, chunk)
        if digest.hexdigest() != expected:
            part.unlink()
            raise web.HTTPBadRequest(text=f"{name}: sha256 {digest.hexdigest()} is not X-Sha256 {expected!r}\n")
        os.chmod(part, 0o600)
        part.replace(self.vdir / name)
        return web.Response(status=201)

    async def finish(self, request: web.Request) -> web.Response:
        if not data_names(self.vdir):
            raise web.HTTPConflict(text="nothing was received\n")
        self.done.set()
        return web.Response(text="seeded\n")


async def serve(
    data: Path,
    token: str,
    *,
    host: str | None = None,
    port: int = PORT,
    seed: bool = False,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run the agent until cancelled; with ``seed``, until the files are in (at once when the
    volume holds data already)."""
    agent = Agent(data, token, seed=seed)
    if seed and data_names(agent.vdir):
        print(f"zkop files: {agent.vdir} holds data already; nothing to receive", flush=True)
        return
    runner = web.AppRunner(agent.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=port, ssl_context=tls)  # None: every address
    await site.start()
    print(f"zkop files: {'receiving into' if seed else 'serving'} {agent.vdir} on port {port}", flush=True)
    try:
        if seed:
            await agent.done.wait()
            await asyncio.sleep(0.2)  # the answer to /v1/done goes out first
        else:
            await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class FilesClient:
    """The operator's side, for one member Pod."""

    def __init__(self, host: str, token: str, *, port: int = PORT, tls: ssl.SSLContext | None = None) -> None:
        self.base = f"{'https' if tls else 'http'}://{host}:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.tls = tls
        self.timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=60)

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else False)
        return aiohttp.ClientSession(headers=self.headers, timeout=self.timeout, connector=connector)

    async def _check(self, response: aiohttp.ClientResponse, what: str) -> None:
        if response.status >= 400:
            text = (await response.text()).strip()
            raise FilesError(f"{what}: the member's file agent answered {response.status}: {text}")

    async def files(self) -> list[tuple[str, int]]:
        try:
            async with self._session() as s, s.get(f"{self.base}/v1/files") as r:
                await self._check(r, "listing the member's files")
                body = json.loads(await r.read())
        except aiohttp.ClientError as exc:
            raise FilesError(f"cannot reach the member's file agent at {self.base}: {exc}") from None
        return [(str(f["name"]), int(f["size"])) for f in body["files"]]

    async def fetch(self, name: str, dest: Path) -> None:
        """Copy ``name`` to ``dest``; FileNotFoundError when it is gone."""
        try:
            async with self._session() as s, s.get(f"{self.base}/v1/files/{name}") as r:
                if r.status == 404:
                    raise FileNotFoundError(name)
                await self._check(r, f"copying {name}")
                with dest.open("wb") as fh:
                    async for chunk in r.content.iter_chunked(CHUNK):
                        await asyncio.to_thread(fh.write, chunk)
        except aiohttp.ClientError as exc:
            raise FilesError(f"copying {name} from {self.base}: {exc}") from None

    async def put(self, name: str, source: Path, sha256: str) -> None:
        async def chunks() -> Any:
            with source.open("rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, CHUNK):
                    yield chunk

        size = (await asyncio.to_thread(source.stat)).st_size
        headers = {"X-Sha256": sha256, "Content-Length": str(size)}
        try:
            async with self._session() as s, s.put(f"{self.base}/v1/files/{name}", data=chunks(), headers=headers) as r:
                await self._check(r, f"sending {name}")
        except aiohttp.ClientError as exc:
            raise FilesError(f"sending {name} to {self.base}: {exc}") from None

    async def done(self) -> None:
        try:
            async with self._session() as s, s.post(f"{self.base}/v1/done") as r:
                await self._check(r, "ending the seed")
        except aiohttp.ClientError as exc:
            raise FilesError(f"ending the seed at {self.base}: {exc}") from None

    async def ready(self) -> bool:
        """Whether the agent answers (a seed step may not listen yet)."""
        try:
            await self.files()
        except FilesError:
            return False
        return True


__all__ = ["PORT", "TOKEN_ENV", "Agent", "FilesClient", "FilesError", "data_names", "serve", "server_context"]
