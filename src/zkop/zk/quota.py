"""ZooKeeper quotas as the server keeps them: under ``/zookeeper/quota<path>``, a node
``zookeeper_limits`` with the limits and a node ``zookeeper_stats`` with what the subtree holds
(the server recomputes it when the stats node is made and keeps it current). This is what
``setquota``/``delquota`` of ``zkCli.sh`` write; the data is ZooKeeper's ``StatsTrack``:
``count=N,bytes=M`` with ``-1`` for no limit, and (ZooKeeper 3.7+) ``;countHardLimit=N;byteHardLimit=M``,
which the server enforces when it runs with ``zookeeper.enforceQuota=true``."""

from __future__ import annotations

from dataclasses import dataclass

QUOTA_ROOT = "/zookeeper/quota"
LIMITS = "zookeeper_limits"
STATS = "zookeeper_stats"


def quota_node(path: str) -> str:
    """``/zookeeper/quota/apps/orders`` for ``/apps/orders``."""
    return QUOTA_ROOT + path


def limits_path(path: str) -> str:
    return f"{quota_node(path)}/{LIMITS}"


def stats_path(path: str) -> str:
    return f"{quota_node(path)}/{STATS}"


@dataclass(frozen=True)
class Limits:
    """A quota: most znodes and bytes (None: no limit); ``hard``: refuse, not warn."""

    count: int | None = None
    size: int | None = None  # bytes
    hard: bool = False

    def encode(self) -> bytes:
        count = -1 if self.count is None else self.count
        size = -1 if self.size is None else self.size
        text = f"count={count},bytes={size}"
        if self.hard:
            text += f";countHardLimit={count};byteHardLimit={size}"
        return text.encode()

    @classmethod
    def decode(cls, data: bytes) -> Limits:
        values: dict[str, int] = {}
        for part in data.decode("utf-8", "replace").replace(";", ",").split(","):
            key, _, value = part.partition("=")
            try:
                values[key.strip()] = int(value)
            except ValueError:
                continue

        def limit(key: str) -> int | None:
            v = values.get(key, -1)
            return None if v < 0 else v

        if limit("countHardLimit") is not None or limit("byteHardLimit") is not None:
            return cls(limit("countHardLimit"), limit("byteHardLimit"), hard=True)
        return cls(limit("count"), limit("bytes"))


EMPTY_STATS = b"count=0,bytes=0"

__all__ = ["EMPTY_STATS", "LIMITS", "QUOTA_ROOT", "STATS", "Limits", "limits_path", "quota_node", "stats_path"]
