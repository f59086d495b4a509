"""Quorum arithmetic of a ZooKeeper ensemble."""

from __future__ import annotations


def majority(n: int) -> int:
    """Members that must serve for a configuration of ``n`` participants to have quorum."""
    if n < 0:
        raise ValueError(f"a configuration cannot have {n} participants")
    return n // 2 + 1


__all__ = ["majority"]
