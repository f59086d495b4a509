"""Test helpers: real ZooKeeper ensembles with kill / pause / restart handles."""

from zkop.testing.ensemble import Ensemble, Member, run_sync, running_ensemble

__all__ = ["Ensemble", "Member", "run_sync", "running_ensemble"]
