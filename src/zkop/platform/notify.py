"""How a platform tells of changes it sees on its own: it calls its subscribers with what
changed (so its controller looks at once), and records events about an application while it
runs for a leader. Neither may fail the platform's own work."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

from zkop.platform.base import AppRef, PlatformEvents

R = TypeVar("R")


class Subscribers(Generic[R]):
    """The callbacks subscribed to changes; one that fails does not stop the others."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[R], None]] = []

    def add(self, callback: Callable[[R], None]) -> None:
        self._callbacks.append(callback)

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def notify(self, ref: R) -> None:
        for callback in self._callbacks:
            with contextlib.suppress(Exception):
                callback(ref)


async def app_event(events: PlatformEvents | None, ref: AppRef, type_: str, reason: str, message: str) -> None:
    """Record an event about the application, when there is a recorder (the platform runs);
    an event that cannot be recorded is let go."""
    if events is not None:
        with contextlib.suppress(Exception):
            await events("Application", ref.namespace, ref.name, type_, reason, message)


__all__ = ["Subscribers", "app_event"]
