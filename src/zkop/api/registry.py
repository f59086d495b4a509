"""The registry of kinds: names, plurals, short names and model classes."""

from __future__ import annotations

from dataclasses import dataclass

from zkop.api.application import Application
from zkop.api.meta import API_VERSION, GROUP, Resource
from zkop.api.operatorconfig import OperatorConfig
from zkop.api.zookeepercluster import ZookeeperCluster
from zkop.api.zookeeperznode import ZookeeperZnode
from zkop.errors import ValidationError


@dataclass(frozen=True)
class KindInfo:
    """What zkop knows about one kind."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    model: type[Resource]
    namespaced: bool = True

    @property
    def singular(self) -> str:
        """Lower-case kind, e.g. ``zookeepercluster``."""
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        """``zkop.io/v1``."""
        return API_VERSION

    def names(self) -> tuple[str, ...]:
        """Every lower-case name the kind answers to."""
        return (self.singular, self.plural, *self.short_names)


#: Every kind, by its ``kind`` name.
KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo("ZookeeperCluster", "zookeeperclusters", ("zkc",), ZookeeperCluster),
        KindInfo("Application", "applications", ("app",), Application),
        KindInfo("OperatorConfig", "operatorconfigs", ("opconfig",), OperatorConfig),
        KindInfo("ZookeeperZnode", "zookeeperznodes", ("znode",), ZookeeperZnode),
    )
}


def known_kinds() -> str:
    """The known kinds for messages: ``ZookeeperCluster (zookeeperclusters, zkc), ...``."""
    return ", ".join(f"{info.kind} ({', '.join((info.plural, *info.short_names))})" for info in KINDS.values())


def resolve_kind(name: str) -> KindInfo:
    """Find a kind by its name (any case), plural or short name; ``.zkop.io`` may follow.

    Raises :class:`zkop.errors.ValidationError` listing the known kinds otherwise.
    """
    wanted = name.strip().lower().removesuffix(f".{GROUP}")
    for info in KINDS.values():
        if wanted in info.names():
            return info
    raise ValidationError(
        f"unknown kind {name!r}; known kinds: {known_kinds()}",
        hint="use a kind name, its plural or its short name",
    )
