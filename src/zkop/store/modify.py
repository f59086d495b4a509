"""Read-modify-write with retry on conflict, and finalizers on top of it.

Work with any store that has ``get`` and ``update`` with resourceVersion preconditions
(the ZooKeeper store, the Kubernetes one): client-go's ``RetryOnConflict`` shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from zkop.api import Resource
from zkop.store.errors import Conflict, NotFound

ATTEMPTS = 10


class _ReadWrite(Protocol):
    async def get(self, kind: str, namespace: str, name: str) -> Resource: ...

    async def update(self, obj: Resource) -> Resource: ...


async def modify(
    store: _ReadWrite,
    kind: str,
    namespace: str,
    name: str,
    change: Callable[[Resource], Resource | None],
    *,
    current: Resource | None = None,
    attempts: int = ATTEMPTS,
) -> Resource | None:
    """Apply ``change`` to the object and write it, reading again and retrying when someone
    else wrote in between. ``change`` returns the new object, or None when nothing is to be
    written (then the object as read is returned). ``current``: a fresh enough copy to try
    first, saving a read. Raises NotFound, or Conflict after ``attempts`` tries."""
    obj = current
    for _ in range(attempts):
        if obj is None:
            obj = await store.get(kind, namespace, name)
        changed = change(obj)
        if changed is None:
            return obj
        try:
            return await store.update(changed)
        except Conflict:
            obj = None
    raise Conflict(f"{kind.lower()} {namespace}/{name} kept changing; try again")


def _with_finalizers(obj: Resource, finalizers: list[str]) -> Resource:
    meta = obj.metadata.model_copy(update={"finalizers": finalizers})
    return obj.model_copy(update={"metadata": meta})


async def add_finalizer(store: _ReadWrite, obj: Resource, finalizer: str) -> Resource | None:
    """Add ``finalizer`` unless present (or the object is being deleted). None: it is gone."""

    def change(o: Resource) -> Resource | None:
        if finalizer in o.metadata.finalizers or o.metadata.deletion_timestamp is not None:
            return None
        return _with_finalizers(o, [*o.metadata.finalizers, finalizer])

    try:
        return await modify(store, obj.kind, obj.namespace, obj.name, change, current=obj)
    except NotFound:
        return None


async def remove_finalizer(store: _ReadWrite, obj: Resource, finalizer: str) -> Resource | None:
    """Remove ``finalizer``; removing the last one of an object being deleted deletes it.
    None: the object is gone."""

    def change(o: Resource) -> Resource | None:
        if finalizer not in o.metadata.finalizers:
            return None
        return _with_finalizers(o, [f for f in o.metadata.finalizers if f != finalizer])

    try:
        return await modify(store, obj.kind, obj.namespace, obj.name, change, current=obj)
    except NotFound:
        return None


def set_annotation(key: str, value: str) -> Callable[[Resource], Resource | None]:
    """A change for :func:`modify` that sets one annotation."""

    def change(o: Resource) -> Resource | None:
        if o.metadata.annotations.get(key) == value:
            return None
        meta = o.metadata.model_copy(update={"annotations": {**o.metadata.annotations, key: value}})
        return o.model_copy(update={"metadata": meta})

    return change


def set_spec(**fields: Any) -> Callable[[Resource], Resource | None]:
    """A change for :func:`modify` that sets top-level spec fields (python names)."""

    def change(o: Resource) -> Resource | None:
        spec = o.spec
        if all(getattr(spec, k) == v for k, v in fields.items()):
            return None
        return o.model_copy(update={"spec": spec.model_copy(update=fields)})

    return change


__all__ = ["add_finalizer", "modify", "remove_finalizer", "set_annotation", "set_spec"]
