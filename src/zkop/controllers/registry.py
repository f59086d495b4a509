"""The controllers an operator replica runs."""

from __future__ import annotations

from pathlib import Path

from zkop.controllers import operatorconfig
from zkop.controllers.application import controller as application
from zkop.controllers.zookeepercluster import controller as zookeepercluster
from zkop.platform.local.instances import LocalInstances
from zkop.platform.local.platform import LocalPlatform
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.runtime.controller import Controller


def build(namespace: str | None, state_dir: Path, platform: LocalPlatform, root: str = "/zkop") -> list[Controller]:
    return [
        operatorconfig.controller(namespace),
        zookeepercluster.controller(namespace, LocalZookeeperPlatform(state_dir, platform.fence)),
        application.controller(namespace, LocalInstances(state_dir, platform.fence), root),
    ]
