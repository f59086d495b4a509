"""``apply``: create what is missing, change what differs, leave the rest alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from zkop.api import Resource, check_update, resolve_kind, to_dict
from zkop.store.errors import Conflict, NotFound
from zkop.store.store import Store

Outcome = Literal["created", "configured", "unchanged"]


def _desired(obj: Resource) -> dict[str, object]:
    data = to_dict(obj)
    meta = data.get("metadata", {})
    return {
        "spec": data.get("spec"),
        "labels": meta.get("labels", {}),
        "annotations": meta.get("annotations", {}),
    }


def _merged_meta(current: Resource, wanted: Resource) -> object:
    return current.metadata.model_copy(
        update={"labels": dict(wanted.metadata.labels), "annotations": dict(wanted.metadata.annotations)}
    )


async def apply_one(store: Store, obj: Resource, *, attempts: int = 5) -> Outcome:
    info = resolve_kind(obj.kind)
    for _ in range(attempts):
        try:
            current = await store.get(info.kind, obj.namespace, obj.name)
        except NotFound:
            await store.create(obj.model_copy(update={"status": type(obj.status)()}))
            return "created"
        check_update(current, obj)
        if _desired(current) == _desired(obj):
            return "unchanged"
        changed = current.model_copy(update={"spec": obj.spec, "metadata": _merged_meta(current, obj)})
        try:
            await store.update(changed)
        except Conflict:
            continue
        return "configured"
    raise Conflict(f"{info.kind.lower()} {obj.key} kept changing while applying; try again")


async def apply_all(store: Store, objects: Sequence[Resource]) -> list[tuple[Resource, Outcome]]:
    """Apply objects in order. All were validated before (``load_yaml``), so bad input never
    reaches the store; a failure part-way reports which objects were applied."""
    results: list[tuple[Resource, Outcome]] = []
    for obj in objects:
        results.append((obj, await apply_one(store, obj)))
    return results
