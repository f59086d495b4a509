"""The one bridge between kazoo (threads) and asyncio.

kazoo runs its I/O and watch callbacks on its own threads. This module turns its
async results into awaitables and hops every callback onto the event loop, so the
rest of zkop is plain asyncio. Nothing else in zkop touches kazoo's threads, apart from
:mod:`zkop.client.kazoo_io`, the client this module runs on (kazoo with its I/O thread
batched for many requests in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kazoo.client import KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import WatchedEvent, ZnodeStat

from zkop.client.kazoo_io import DirectResult, Kazoo
from zkop.errors import ZkopError

if TYPE_CHECKING:
    from zkop.zk.tls import TlsFiles

log = logging.getLogger(__name__)


class Unavailable(ZkopError):
    """ZooKeeper could not be reached within the bound."""


@dataclass(frozen=True)
class Op:
    """One operation of a multi-op transaction."""

    kind: str  # "create" | "set" | "delete" | "check"
    path: str
    data: bytes = b""
    version: int = -1
    acl: tuple[Any, ...] | None = None
    ephemeral: bool = False
    sequence: bool = False

    @staticmethod
    def create(
        path: str,
        data: bytes,
        *,
        acl: Sequence[Any] | None = None,
        ephemeral: bool = False,
        sequence: bool = False,
    ) -> Op:
        return Op("create", path, data, acl=tuple(acl) if acl else None, ephemeral=ephemeral, sequence=sequence)

    @staticmethod
    def set(path: str, data: bytes, version: int = -1) -> Op:
        return Op("set", path, data, version)

    @staticmethod
    def delete(path: str, version: int = -1) -> Op:
        return Op("delete", path, version=version)

    @staticmethod
    def check(path: str, version: int) -> Op:
        return Op("check", path, version=version)


class TransactionFailed(ZkopError):
    """A multi-op transaction was rolled back; ``errors`` holds each op's outcome."""

    def __init__(self, ops: Sequence[Op], results: Sequence[Any]) -> None:
        self.ops = list(ops)
        self.results = list(results)
        first = next(
            (
                (op, r)
                for op, r in zip(ops, results, strict=False)
                if isinstance(r, Exception) and type(r).__name__ != "RolledBackError"
            ),
            None,
        )
        self.failed_op = first[0] if first else None
        self.error = first[1] if first else None
        what = f"{first[0].kind} {first[0].path}: {type(first[1]).__name__}" if first else "unknown"
        super().__init__(f"transaction failed at {what}")


class _Settler:
    """Hands kazoo's results to the event loop in batches: many results settled together wake
    the loop once (each wake-up is a write to its self-pipe), which matters when hundreds of
    requests are in flight on one connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[tuple[asyncio.Future[Any], bool, Any]] = []

    def put(self, fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
        with self.lock:
            self.pending.append((fut, ok, value))
            if len(self.pending) > 1:
                return  # a drain is already on its way
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
        for fut, ok, value in batch:
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


_SETTLERS: dict[asyncio.AbstractEventLoop, _Settler] = {}


def _settler(loop: asyncio.AbstractEventLoop) -> _Settler:
    settler = _SETTLERS.get(loop)
    if settler is None:
        for old in [k for k in _SETTLERS if k.is_closed()]:
            _SETTLERS.pop(old, None)
        settler = _SETTLERS[loop] = _Settler(loop)
    return settler


def _to_future(loop: asyncio.AbstractEventLoop, async_result: DirectResult) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = loop.create_future()
    settler = _settler(loop)

    def settle(result: Any) -> None:
        try:
            value = result.get_nowait()
        except BaseException as exc:
            settler.put(fut, False, exc)
        else:
            settler.put(fut, True, value)

    async_result.link_direct(settle)  # every result of a Kazoo client is a DirectResult
    return fut


WatchCallback = Callable[[WatchedEvent], None]


class ZkClient:
    """An asyncio face for one ZooKeeper session."""

    def __init__(
        self,
        hosts: str,
        *,
        auth_data: Iterable[tuple[str, str]] = (),
        session_timeout: float = 10.0,
        read_only: bool = False,
        tls: TlsFiles | None = None,
    ) -> None:
        """``tls``: connect with TLS, presenting this client certificate."""
        self.hosts = hosts
        self.kazoo = Kazoo(
            hosts=hosts,
            timeout=session_timeout,
            auth_data=list(auth_data),
            read_only=read_only,
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
            **(tls.kazoo_options() if tls is not None else {}),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state_listeners: list[Callable[[str], None]] = []
        self.kazoo.add_listener(self._on_state)

    # ---- lifecycle ---------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.kazoo.bind(self._loop)
        return self._loop

    async def start(self, timeout: float = 15.0) -> None:
        self._loop = asyncio.get_running_loop()
        self.kazoo.bind(self._loop)
        try:
            await asyncio.to_thread(self.kazoo.start, timeout)
        except (KazooTimeoutError, KazooException) as exc:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.kazoo.stop)
            raise Unavailable(
                f"cannot reach ZooKeeper at {self.hosts} within {timeout:.0f}s ({type(exc).__name__})",
                hint="is the control plane up (`zkop up`)? check --zk / ZKOP_ZK",
            ) from None

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop_sync)

    def _stop_sync(self) -> None:
        with contextlib.suppress(Exception):
            self.kazoo.stop()
        with contextlib.suppress(Exception):
            self.kazoo.close()

    @property
    def connected(self) -> bool:
        return bool(self.kazoo.connected)

    @property
    def state(self) -> str:
        return str(self.kazoo.state)

    @property
    def session_id(self) -> int | None:
        sid = self.kazoo.client_id
        return sid[0] if sid else None

    def add_state_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(state)`` runs on the event loop for CONNECTED, SUSPENDED and LOST."""
        self._state_listeners.append(listener)

    def remove_state_listener(self, listener: Callable[[str], None]) -> None:
        with contextlib.suppress(ValueError):
            self._state_listeners.remove(listener)

    def _on_state(self, state: KazooState) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for listener in list(self._state_listeners):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(listener, str(state))

    def hop(self, callback: WatchCallback) -> WatchCallback:
        """Wrap a watch so that it runs on the event loop, not on kazoo's thread.

        Keep the wrapper and pass it again when re-arming the same watch: kazoo keeps a set
        of callbacks per path, so one wrapper per path never piles up duplicates.
        """
        loop = self.loop

        def hopped(event: WatchedEvent) -> None:
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(callback, event)

        hopped._zkop_hopped = True  # type: ignore[attr-defined]
        return hopped

    def _watch(self, callback: WatchCallback | None) -> WatchCallback | None:
        if callback is None or getattr(callback, "_zkop_hopped", False):
            return callback
        return self.hop(callback)

    # ---- operations --------------------------------------------------------------

    def _send(self, make: Callable[[], Any]) -> asyncio.Future[Any]:
        """The request ``make()`` queues (a kazoo ``*_async`` call), its answer a future. Requests
        made in one turn of the loop wake kazoo's I/O thread once."""
        loop = self.loop
        return _to_future(loop, self.kazoo.batched(make))

    async def get(self, path: str, watch: WatchCallback | None = None) -> tuple[bytes, ZnodeStat]:
        result: tuple[bytes, ZnodeStat] = await self.get_future(path, watch)
        return result

    def get_future(self, path: str, watch: WatchCallback | None = None) -> asyncio.Future[tuple[bytes, ZnodeStat]]:
        """The read sent now, its answer a future (several reads in flight without a task each)."""
        return self._send(lambda: self.kazoo.get_async(path, watch=self._watch(watch)))

    async def exists(self, path: str, watch: WatchCallback | None = None) -> ZnodeStat | None:
        result: ZnodeStat | None = await self._send(lambda: self.kazoo.exists_async(path, watch=self._watch(watch)))
        return result

    async def sync(self, path: str) -> None:
        """Bring this session's server up to date with the leader for ``path`` (before a read
        whose answer must not be stale, e.g. one that decides to stop something)."""
        await self._send(lambda: self.kazoo.sync_async(path))

    async def get_children(self, path: str, watch: WatchCallback | None = None) -> list[str]:
        result: list[str] = await self._send(lambda: self.kazoo.get_children_async(path, watch=self._watch(watch)))
        return result

    async def create(
        self,
        path: str,
        value: bytes = b"",
        *,
        acl: Sequence[Any] | None = None,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        result: str = await self._send(
            lambda: self.kazoo.create_async(
                path,
                value,
                acl=list(acl) if acl else None,
                ephemeral=ephemeral,
                sequence=sequence,
                makepath=makepath,
            ),
        )
        return result

    async def set(self, path: str, value: bytes, version: int = -1) -> ZnodeStat:
        result: ZnodeStat = await self._send(lambda: self.kazoo.set_async(path, value, version))
        return result

    async def delete(self, path: str, version: int = -1) -> None:
        await self._send(lambda: self.kazoo.delete_async(path, version))

    async def ensure_path(self, path: str, acl: Sequence[Any] | None = None) -> None:
        await self._send(lambda: self.kazoo.ensure_path_async(path, acl=list(acl) if acl else None))

    async def get_acls(self, path: str) -> tuple[list[Any], ZnodeStat]:
        """The znode's ACL and stat (digest ids show as ``user:x`` without ADMIN rights)."""
        result: tuple[list[Any], ZnodeStat] = await self._send(lambda: self.kazoo.get_acls_async(path))
        return result

    async def set_acls(self, path: str, acls: Sequence[Any], version: int = -1) -> ZnodeStat:
        """Replace the znode's ACL; ``version`` is checked against the stat's ``aversion``."""
        result: ZnodeStat = await self._send(lambda: self.kazoo.set_acls_async(path, list(acls), version))
        return result

    async def reconfig(
        self, *, joining: str | None = None, leaving: str | None = None, from_config: int = -1
    ) -> tuple[bytes, ZnodeStat]:
        """Incremental dynamic reconfiguration (needs the super user's auth)."""
        result: tuple[bytes, ZnodeStat] = await self._send(
            lambda: self.kazoo.reconfig_async(joining, leaving, None, from_config)
        )
        return result

    async def commit(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` as one atomic transaction; raise :class:`TransactionFailed` on rollback."""
        spec = [
            (
                op.kind,
                op.path,
                op.data,
                op.version,
                list(op.acl) if op.acl else None,
                (1 if op.ephemeral else 0) | (2 if op.sequence else 0),
            )
            for op in ops
        ]
        results: list[Any] = await self._send(lambda: self.kazoo.transact_async(spec))
        if any(isinstance(r, Exception) for r in results):
            raise TransactionFailed(ops, results)
        return results
