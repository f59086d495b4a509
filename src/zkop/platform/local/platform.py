"""The local platform as the runtime sees it: fenced by the leadership epoch."""

from __future__ import annotations

from pathlib import Path

from zkop.platform.local.fence import EpochFence


class LocalPlatform:
    """Actions on this machine, refused when their epoch is older than the newest seen."""

    name = "local"

    def __init__(self, state_dir: Path, manager: str = "zkop-operator") -> None:
        self.state_dir = state_dir
        self.fence = EpochFence(state_dir / "fence" / f"{manager}.json")

    def claim(self, epoch: int) -> None:
        with self.fence.hold(epoch):
            pass
