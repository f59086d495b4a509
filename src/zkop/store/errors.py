"""Store errors. Each names the object and what to do."""

from __future__ import annotations

from zkop.errors import Fenced, ZkopError

__all__ = ["AlreadyExists", "Conflict", "CorruptObject", "Fenced", "Forbidden", "NotFound", "StoreError", "TooLarge"]


class StoreError(ZkopError):
    pass


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The object changed since it was read (stale resourceVersion)."""


class TooLarge(StoreError):
    pass


class Forbidden(StoreError):
    """The caller's identity may not do this (Kubernetes RBAC said no); nothing was written."""


class CorruptObject(StoreError):
    """A znode that does not hold a valid object; readers report it and go on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"corrupt object at {path}: {reason}", hint="fix or delete the znode; zkop skips it meanwhile")
        self.path = path
        self.reason = reason
