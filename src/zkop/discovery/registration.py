"""Self-registration: :class:`Registration`, an instance's own EPHEMERAL endpoint.

It needs the service's registry identity (``svc/<ns>/<app>:<password>``:
``ZKOP_REGISTRY_AUTH`` for instances zkop runs, ``zkop registry grant NS/APP`` for other
services) and a service already in the registry; without either it is refused before
anything is written (see :mod:`.registry` for the ACLs). Each registration has a ZooKeeper
session of its own, authenticated with that identity only, and creates EPHEMERAL znodes in
it, so they disappear when the process dies or its session expires. ``unregister()`` ends
that session. A registration whose session expired is made again (and its last load
report too) as soon as a new session is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TypedDict

from kazoo.exceptions import BadVersionError, NoAuthError, NodeExistsError, NoNodeError
from kazoo.protocol.states import WatchedEvent

from zkop.client.bridge import ZkClient
from zkop.discovery import registry
from zkop.discovery.instances import Instance
from zkop.errors import ZkopError

__all__ = ["REPLACE_WAIT", "RegisterOptions", "Registration"]

log = logging.getLogger("zkop.discovery.client")  # the discovery client's messages, whichever module

REPLACE_WAIT = 30.0
"""The default ``replace_wait``, in seconds."""


class RegisterOptions(TypedDict, total=False):
    """The keyword options of ``register()``: the blocking API passes them on unchanged."""

    credentials: str | None
    """The service's registry identity, ``"svc/<ns>/<app>:<password>"`` (None: the client's ``auth_data``)."""
    replace_wait: float
    """At most how long to wait for another live session's endpoint of the same id to go."""


class Registration:
    """A self-registered endpoint: EPHEMERAL znodes in a session of its own.

    Gone when :meth:`unregister` ends that session or the process dies; made again
    after the session expires and a new one is up.
    """

    def __init__(
        self,
        client: ZkClient,
        root: str,
        namespace: str,
        app: str,
        instance: Instance,
        *,
        replace_wait: float = REPLACE_WAIT,
    ) -> None:
        registry.parse_service(f"{namespace}/{app}")  # validates the names
        self.client = client
        self.root = root
        self.namespace = namespace
        self.app = app
        self.instance = instance
        self.path = f"{registry.endpoints_path(root, namespace, app)}/{instance.id}"
        self.replace_wait = replace_wait
        self.last_load: float | None = None
        self.closed = False
        self._repair: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.client.kazoo.auth_data:
            raise registry.no_identity(self.namespace, self.app, "registering")
        await self._create()
        self.client.add_state_listener(self._on_state)

    async def _create(self) -> None:
        raw = registry.encode(self.instance)
        waited = False
        for _ in range(5):
            try:
                await self.client.create(self.path, raw, acl=registry.creator_acl(), ephemeral=True)
                return
            except NoNodeError:
                # Only the operator makes a service's folders.
                raise registry.not_in_registry(self.namespace, self.app) from None
            except NoAuthError:
                raise registry.refused(self.client, self.namespace, self.app, "registering") from None
            except NodeExistsError:
                pass
            try:
                _, stat = await self.client.get(self.path)
            except NoNodeError:
                continue
            if stat.ephemeralOwner == self.client.session_id:
                await self.client.set(self.path, raw)
                return
            if stat.ephemeralOwner == 0:
                raise ZkopError(
                    f"{self.namespace}/{self.app} instance {self.instance.id!r} is an endpoint the operator manages",
                    hint="self-registered instances need ids of their own",
                )
            # Another session's (perhaps this instance before a restart): replace it (the
            # service's identity may delete in its folder), else wait for that session to end.
            try:
                await self.client.delete(self.path, stat.version)
                continue
            except (NoNodeError, BadVersionError):
                continue
            except NoAuthError:
                pass
            if waited:
                break
            waited = True
            await self._wait_gone()
        raise ZkopError(
            f"{self.namespace}/{self.app} instance {self.instance.id!r} is registered by another live session",
            hint="instance ids must be unique within a service; the old one goes when its session ends",
        )

    async def _wait_gone(self) -> None:
        """Wait (at most ``replace_wait`` seconds) for the znode at our path to go."""
        gone = asyncio.Event()

        def fire(_event: WatchedEvent) -> None:
            gone.set()

        if await self.client.exists(self.path, watch=self.client.hop(fire)) is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.replace_wait):
                    await gone.wait()

    def _on_state(self, state: str) -> None:
        if state == "CONNECTED" and not self.closed and (self._repair is None or self._repair.done()):
            self._repair = asyncio.create_task(self._ensure())

    async def _ensure(self) -> None:
        """After a reconnect: the znodes are still ours, or (session expired) made again."""
        try:
            stat = await self.client.exists(self.path)
            if self.closed:
                return
            if stat is None or stat.ephemeralOwner != self.client.session_id:
                log.info("re-registering %s after a session loss", self.path)
                await self._create()
                if self.last_load is not None:
                    await self.report_load(self.last_load)
        except Exception as exc:
            log.warning("re-registering %s failed (%s); trying again on the next reconnect", self.path, exc)

    async def report_load(self, value: float) -> None:
        """Report this instance's load for the autoscaler (an ephemeral znode as well)."""
        await registry.report_load(self.client, self.root, self.namespace, self.app, self.instance.id, value)
        self.last_load = float(value)

    async def unregister(self) -> None:
        """Remove the endpoint and load report now: ends the registration's session."""
        if self.closed:
            return
        self.closed = True
        self.client.remove_state_listener(self._on_state)
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(BaseException):
                await self._repair
        # Closing the session removes its ephemeral znodes (the endpoint and the load report)
        # before ZooKeeper confirms the close; no delete rights needed.
        await self.client.stop()

    async def __aenter__(self) -> Registration:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unregister()
