"""What a reconciler is asked (:class:`Request`) and what it answers (:class:`Result`).

How a controller treats the answer (the controller-runtime contract):

- the reconciler raised: ``queue.add_rate_limited(key)`` (per-key backoff);
- ``Result(requeue_after=s)``: ``queue.forget(key)`` then ``queue.add_after(key, s)``;
- ``Result(requeue=True)``: ``queue.add_rate_limited(key)``;
- ``Result()``: ``queue.forget(key)`` (success; the backoff starts over).

``requeue_after`` wins over ``requeue`` when both are set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Request", "Result"]


@dataclass(frozen=True)
class Result:
    """The outcome of one reconcile."""

    requeue: bool = False
    """Run again with per-key backoff, as after a failure (but without an error)."""
    requeue_after: float | None = None
    """Run again after this many seconds (a periodic check); resets the backoff."""

    def __post_init__(self) -> None:
        if self.requeue_after is not None and not (math.isfinite(self.requeue_after) and self.requeue_after >= 0):
            raise ValueError(
                f"requeue_after must be a finite number of seconds >= 0 or None, got {self.requeue_after!r}"
            )

    @property
    def is_done(self) -> bool:
        """True when nothing is asked for: the key runs again only on its next event or resync."""
        return not self.requeue and self.requeue_after is None


@dataclass(frozen=True, order=True)
class Request:
    """The resource a reconcile is about: its namespace and name, nothing else (level-triggered)."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a Request needs a name")
        if "/" in self.namespace or "/" in self.name:
            raise ValueError(
                f"namespace and name may not contain '/', got namespace={self.namespace!r} name={self.name!r}"
            )

    @property
    def key(self) -> str:
        """``"namespace/name"``, or ``"name"`` for a resource without a namespace."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def from_key(cls, key: str) -> Request:
        """Parse ``"namespace/name"`` (or ``"name"``) back into a Request."""
        parts = key.split("/")
        if len(parts) == 1:
            return cls(namespace="", name=parts[0])
        if len(parts) == 2 and parts[0] and parts[1]:
            return cls(namespace=parts[0], name=parts[1])
        raise ValueError(f"a key is 'namespace/name' or 'name', got {key!r}")

    def __str__(self) -> str:
        return self.key
