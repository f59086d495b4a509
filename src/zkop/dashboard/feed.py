"""The latest snapshot, and a wake-up for every page streaming it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any


class Feed:
    """Holds the newest snapshot as the JSON the page gets; ``version`` grows with every change
    (a snapshot equal to the last one is not a change)."""

    def __init__(self) -> None:
        self.version = 0
        self.payload: bytes | None = None
        self.closed = False
        self._body: bytes | None = None
        self._changed = asyncio.Event()

    def publish(self, data: Mapping[str, Any]) -> bool:
        """Make ``data`` the newest snapshot; False when it is the same as the last one."""
        body = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str).encode()
        if body == self._body:
            return False
        self._body = body
        self.version += 1
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        head = json.dumps({"version": self.version, "generatedAt": stamp}, separators=(",", ":")).encode()
        self.payload = head[:-1] + b"," + body[1:] if body != b"{}" else head
        self._wake()
        return True

    def close(self) -> None:
        """Wake every stream for the last time: the dashboard stops."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a version newer than ``seen``; True when there is
        one (or the feed closed)."""
        if self.version > seen or self.closed:
            return True
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()
        return self.version > seen or self.closed


__all__ = ["Feed"]
