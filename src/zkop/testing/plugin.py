"""pytest plugin: real ZooKeeper ensembles as fixtures.

Installed with zkop and registered as the ``zkop`` pytest11 plugin, so any project
that has zkop in its test environment gets these fixtures:

- ``zk_ensemble``: a fresh 3-member ensemble for one test.
- ``zk_single``: a fresh 1-member ensemble for one test.
- ``zk_ensemble_factory``: ``zk_ensemble_factory(members=5)`` for other sizes.

Every process a fixture starts is stopped by pid at teardown, also when the test fails.
Needs Java and Apache ZooKeeper (``apt-get install zookeeper`` or ``ZOOKEEPER_HOME``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zkop.testing.ensemble import Ensemble, running_ensemble

EnsembleFactory = Callable[..., Ensemble]


@pytest.fixture
def zk_ensemble_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnsembleFactory]:
    with contextlib.ExitStack() as stack:
        counter = 0

        def make(members: int = 3, **kwargs: Any) -> Ensemble:
            nonlocal counter
            counter += 1
            root: Path = tmp_path_factory.mktemp(f"zk{counter}-")
            return stack.enter_context(running_ensemble(members, state_dir=root, **kwargs))

        yield make


@pytest.fixture
def zk_ensemble(zk_ensemble_factory: EnsembleFactory) -> Ensemble:
    return zk_ensemble_factory(3)


@pytest.fixture
def zk_single(zk_ensemble_factory: EnsembleFactory) -> Ensemble:
    return zk_ensemble_factory(1)
