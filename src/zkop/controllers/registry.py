"""The controllers an operator replica runs."""

from __future__ import annotations

from pathlib import Path

from zkop.controllers import operatorconfig
from zkop.controllers.zookeepercluster import controller as zookeepercluster
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.controller import Controller


def build(namespace: str | None, state_dir: Path, platform: LocalPlatform) -> list[Controller]:
    return [
        operatorconfig.controller(namespace),
        zookeepercluster.controller(namespace, LocalZookeeperPlatform(state_dir, platform.fence)),
    ]
