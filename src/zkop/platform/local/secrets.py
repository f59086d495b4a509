"""Credentials handed over on this machine (the :class:`~zkop.platform.base.SecretStore`
contract): ``<state>/secrets/<namespace>/<name>/``, a directory (0700) with one file per key
(0600), as Kubernetes mounts a Secret. Writes replace each file in one step and are fenced."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from zkop.platform.local.fence import EpochFence, run_fenced
from zkop.zk.tls import write_private


class LocalSecretStore:
    def __init__(self, state_dir: Path, fence: EpochFence | None) -> None:
        self.root = state_dir / "secrets"
        self.fence = fence

    def path(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name

    def reference(self, namespace: str, name: str) -> str:
        return str(self.path(namespace, name))

    async def read(self, namespace: str, name: str) -> Mapping[str, str] | None:
        def work() -> dict[str, str] | None:
            where = self.path(namespace, name)
            if not where.is_dir():
                return None
            return {
                f.name: f.read_text() for f in sorted(where.iterdir()) if f.is_file() and not f.name.startswith(".")
            }

        return await asyncio.to_thread(work)

    async def write(self, namespace: str, name: str, data: Mapping[str, str], *, epoch: int | None) -> None:
        def work() -> None:
            where = self.path(namespace, name)
            where.mkdir(parents=True, exist_ok=True)
            os.chmod(where, 0o700)
            for key, value in data.items():
                write_private(where / key, value)
            for old in where.iterdir():
                if old.is_file() and old.name not in data and not old.name.startswith("."):
                    old.unlink()

        await run_fenced(self.fence, epoch, work)

    async def delete(self, namespace: str, name: str, *, epoch: int | None) -> None:
        await run_fenced(self.fence, epoch, lambda: shutil.rmtree(self.path(namespace, name), ignore_errors=True))


__all__ = ["LocalSecretStore"]
