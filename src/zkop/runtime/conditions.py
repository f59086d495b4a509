"""Conditions a reconciler computes, merged into what the object had (Kubernetes conventions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from zkop.api import Condition
from zkop.store.store import now

# Set by the runtime when a reconcile raises; a reconciler that writes status got through.
RECONCILE_ERROR = "ReconcileError"


def merge_conditions(
    old: Sequence[Condition],
    computed: Mapping[str, tuple[bool, str, str]],
    *,
    generation: int | None,
    drop: Collection[str] = (),
    succeeded: bool = True,
    at: dt.datetime | None = None,
) -> list[Condition]:
    """``computed`` maps a type to (holds, reason, message).

    A condition keeps its lastTransitionTime unless its status flips. Old conditions of
    other types are kept, except those in ``drop`` (types the caller owns but did not
    compute this time) and, when the reconcile ``succeeded``, the runtime's ReconcileError
    (a failing reconcile keeps it, so the status does not flip on every retry). Sorted by
    type so equal states compare equal.
    """
    stamp = at or now()
    by_type = {c.type: c for c in old}
    gone = {*drop, RECONCILE_ERROR} if succeeded else set(drop)
    out = [c for c in old if c.type not in computed and c.type not in gone]
    for type_, (holds, reason, message) in computed.items():
        status: Literal["True", "False"] = "True" if holds else "False"
        prev = by_type.get(type_)
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message or None,
                last_transition_time=prev.last_transition_time if prev and prev.status == status else stamp,
                observed_generation=generation,
            )
        )
    return sorted(out, key=lambda c: c.type)
