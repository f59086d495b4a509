"""The store interface the runtime, the controllers and the CLI program against. Two stores
implement it: resources in ZooKeeper (:class:`zkop.store.Store`, the local default) and custom
resources in the Kubernetes API (:class:`zkop.store.kube.KubeStore`)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal, Protocol

from zkop.api import Resource
from zkop.store.events import EventRecord
from zkop.store.selector import Selector
from zkop.store.watch import WatchEvent
from zkop.store.znodes import Fence


class ResourceStore(Protocol):
    async def get(self, kind: str, namespace: str, name: str) -> Resource: ...

    async def get_fresh(self, kind: str, namespace: str, name: str) -> Resource:
        """A read that sees every write acknowledged before it was asked (no lagging replica)."""
        ...

    async def list(self, kind: str, namespace: str | None = None, selector: str | Selector | None = None) -> Any: ...

    async def create(self, obj: Resource) -> Resource: ...

    async def update(self, obj: Resource) -> Resource: ...

    async def update_status(self, obj: Resource) -> Resource: ...

    async def modify(
        self, kind: str, namespace: str, name: str, change: Callable[[Resource], Resource | None]
    ) -> Resource | None: ...

    async def delete(self, kind: str, namespace: str, name: str) -> Literal["deleted", "terminating"]: ...

    def watch(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        resume_from: Mapping[str, str] | None = None,
        relist_interval: float | None = None,
    ) -> AsyncIterator[WatchEvent]: ...

    async def record_event(
        self, obj: Resource, type_: str, reason: str, message: str, *, source: str = "zkop"
    ) -> None: ...

    async def record_event_for(
        self,
        kind: str,
        plural: str,
        namespace: str,
        name: str,
        type_: str,
        reason: str,
        message: str,
        source: str = "zkop",
    ) -> None: ...

    async def list_events(
        self, namespace: str | None = None, *, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]: ...

    def fenced(self, fence: Fence) -> ResourceStore:
        """The same store whose every write is refused once ``fence``'s term is over."""
        ...


__all__ = ["ResourceStore"]
