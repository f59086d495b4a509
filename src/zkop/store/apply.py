"""``apply``: create what is missing, change what differs, leave the rest alone.

The one apply path: ``zkop apply``, the demo and the tests all come through here. An object
that names the ``metadata.resourceVersion`` it was based on is applied only over that
version; one that does not is applied over the newest (read again on a conflict).
:func:`apply_all` checks every object against the store before it writes any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Literal

from zkop.api import Resource, check_update, to_dict
from zkop.errors import Refused, ZkopError
from zkop.store.base import ResourceStore
from zkop.store.codec import encode
from zkop.store.errors import Conflict, CorruptObject, NotFound

Outcome = Literal["created", "configured", "unchanged"]


def ref(obj: Resource) -> str:
    """``zookeepercluster/orders``."""
    return f"{obj.kind.lower()}/{obj.name}"


def _desired(obj: Resource) -> tuple[object, object, object]:
    data = to_dict(obj)
    meta = data.get("metadata", {})
    return data.get("spec"), meta.get("labels", {}), meta.get("annotations", {})


def _missing(obj: Resource) -> Conflict:
    return Conflict(
        f"{ref(obj)} has metadata.resourceVersion {obj.metadata.resource_version} but does not exist",
        hint="leave resourceVersion out to create it",
    )


def _stale(obj: Resource, current: Resource, hint: str) -> Conflict:
    return Conflict(
        f"{ref(obj)} was changed by someone else (resourceVersion {obj.metadata.resource_version} is stale, "
        f"now {current.metadata.resource_version})",
        hint=hint,
    )


async def apply_one(store: ResourceStore, obj: Resource) -> Outcome:
    """Make the stored object's spec, labels and annotations those of ``obj``."""
    outcome: Outcome = "unchanged"

    def change(current: Resource) -> Resource | None:
        nonlocal outcome
        check_update(current, obj)
        wanted = obj.metadata.resource_version
        if wanted and wanted != current.metadata.resource_version:
            raise _stale(obj, current, "get it again and retry")
        if _desired(current) == _desired(obj):
            outcome = "unchanged"
            return None
        outcome = "configured"
        meta = current.metadata.model_copy(
            update={"labels": dict(obj.metadata.labels), "annotations": dict(obj.metadata.annotations)}
        )
        return current.model_copy(update={"spec": obj.spec, "metadata": meta})

    try:
        await store.modify(obj.kind, obj.namespace, obj.name, change)
    except NotFound:
        if obj.metadata.resource_version:
            raise _missing(obj) from None
        await store.create(obj.model_copy(update={"status": type(obj.status)()}))
        return "created"
    return outcome


async def _current(store: ResourceStore, obj: Resource) -> Resource | ZkopError | None:
    try:
        return await store.get(obj.kind, obj.namespace, obj.name)
    except NotFound:
        return None
    except CorruptObject as exc:
        return exc


async def preflight(store: ResourceStore, objects: Sequence[Resource]) -> None:
    """What the store would refuse, checked for every object before any is written: size,
    immutable fields, a stale ``metadata.resourceVersion``, a corrupt stored object."""
    currents = await asyncio.gather(*(_current(store, o) for o in objects))
    errors: list[ZkopError] = []
    for obj, current in zip(objects, currents, strict=True):
        try:
            encode(obj)  # raises TooLarge
            if isinstance(current, ZkopError):
                raise ZkopError(
                    f"{ref(obj)} cannot be applied: {current}",
                    hint=f"remove it first with `zkop delete {obj.kind.lower()} {obj.name} --force`",
                )
            wanted = obj.metadata.resource_version
            if current is None:
                if wanted:
                    raise _missing(obj)
                continue
            check_update(current, obj)
            if wanted and wanted != current.metadata.resource_version:
                raise _stale(obj, current, "get it again, or leave resourceVersion out to apply over the newest")
        except ZkopError as exc:
            errors.append(exc)
    if errors:
        raise Refused(errors)


async def apply_all(
    store: ResourceStore,
    objects: Sequence[Resource],
    on_result: Callable[[Resource, Outcome], None] | None = None,
) -> list[tuple[Resource, Outcome]]:
    """Check every object against the store (:func:`preflight`), then apply them in order.
    All were validated before (``load_yaml``), so bad input never reaches the store; a
    failure part-way reports which objects were applied (``on_result`` is told of each)."""
    await preflight(store, objects)
    results: list[tuple[Resource, Outcome]] = []
    for obj in objects:
        outcome = await apply_one(store, obj)
        results.append((obj, outcome))
        if on_result is not None:
            on_result(obj, outcome)
    return results


__all__ = ["Outcome", "apply_all", "apply_one", "preflight", "ref"]
