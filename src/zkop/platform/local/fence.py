"""The local platform's fencing record: an action with an older epoch than the newest seen
is refused. The record is checked and updated under an exclusive file lock, so two
operator replicas on one machine cannot both act."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from zkop.errors import Fenced

__all__ = ["EpochFence", "Fenced", "run_fenced"]


class EpochFence:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_suffix(".lock")

    @contextlib.contextmanager
    def hold(self, epoch: int | None) -> Iterator[None]:
        """Admit an action of ``epoch`` and keep others out until it is done.

        ``None`` is a person acting by hand (CLI); it is not fenced and does not raise the epoch.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if epoch is not None:
                newest = self.newest()
                if newest is not None and epoch < newest:
                    raise Fenced(
                        f"action refused: epoch {epoch} is older than epoch {newest} already seen",
                        hint="this operator replica is no longer the leader",
                    )
                if newest is None or epoch > newest:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"epoch": epoch}))
                    tmp.replace(self.path)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def newest(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


async def run_fenced(fence: EpochFence | None, epoch: int | None, work: Callable[[], object]) -> None:
    """Run ``work`` in a thread under the fence (its lock may be held by another action);
    without a fence, unfenced."""

    def run() -> None:
        if fence is None:
            work()
            return
        with fence.hold(epoch):
            work()

    await asyncio.to_thread(run)
