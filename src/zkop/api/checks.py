"""Checks beyond a single document: updates of stored objects, and warnings."""

from __future__ import annotations

from zkop.api.application import Application
from zkop.api.errors import Problem, ResourceValidationError
from zkop.api.meta import Resource
from zkop.api.zookeepercluster import ZookeeperCluster


def check_update(old: Resource, new: Resource) -> None:
    """Refuse an update that changes an immutable field: ``apiVersion``, ``kind``,
    ``metadata.name``, ``metadata.namespace``, or ``metadata.uid`` when both carry one."""
    changes: list[tuple[str, object, object]] = [
        ("apiVersion", old.api_version, new.api_version),
        ("kind", old.kind, new.kind),
        ("metadata.name", old.metadata.name, new.metadata.name),
        ("metadata.namespace", old.metadata.namespace, new.metadata.namespace),
    ]
    if old.metadata.uid is not None and new.metadata.uid is not None:
        changes.append(("metadata.uid", old.metadata.uid, new.metadata.uid))
    problems = [
        Problem(path, f"cannot change from {before!r} to {after!r}; the field is immutable")
        for path, before, after in changes
        if before != after
    ]
    if problems:
        raise ResourceValidationError(problems, kind=old.kind, name=old.metadata.name)


def warnings_for(obj: Resource) -> list[str]:
    """Things that are allowed but probably not meant, as ``path: message`` lines."""
    out: list[str] = []
    if isinstance(obj, ZookeeperCluster):
        replicas = obj.spec.replicas
        if replicas % 2 == 0:
            tolerated = (replicas - 1) // 2
            out.append(
                f"spec.replicas: {replicas} members tolerate {tolerated} failure"
                f"{'' if tolerated == 1 else 's'}, no more than {replicas - 1} members do; "
                "an odd number is recommended"
            )
    elif isinstance(obj, Application):
        scaling = obj.spec.autoscaling
        if scaling is not None and not (scaling.min_replicas <= obj.spec.replicas <= scaling.max_replicas):
            out.append(
                f"spec.replicas: {obj.spec.replicas} is outside autoscaling's "
                f"{scaling.min_replicas}..{scaling.max_replicas}; the autoscaler will move it"
            )
    return out
