"""One instance of a service, as a discovery client sees it.

An :class:`Instance` is a value: it is frozen, hashable and compared field by
field. Its ``payload`` (free-form metadata a service registers next to its
address, such as a zone or a version) is copied into a read-only mapping when
the instance is built, so nobody can change an instance another component holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _empty_payload() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Instance:
    """A reachable endpoint of a service.

    ``id`` names the instance within its service and is what load-balancing
    strategies track it by: two ``Instance`` values with the same ``id`` are the
    same instance (perhaps re-registered with a new payload).
    """

    id: str
    host: str
    port: int
    payload: Mapping[str, Any] = field(default_factory=_empty_payload, hash=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an instance needs a non-empty id")
        if not self.host:
            raise ValueError(f"instance {self.id!r} needs a non-empty host")
        if isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise ValueError(f"instance {self.id!r}: port must be 1..65535, got {self.port!r}")
        # A private copy behind a read-only view: the caller's dict can change
        # afterwards without changing this instance.
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))

    @property
    def address(self) -> str:
        """``host:port``, with an IPv6 host in brackets (``[::1]:2181``)."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the payload is copied)."""
        return {"id": self.id, "host": self.host, "port": self.port, "payload": dict(self.payload)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        """The inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed dict."""
        try:
            ident, host, port = data["id"], data["host"], data["port"]
        except KeyError as exc:
            raise ValueError(f"instance data is missing the {exc.args[0]!r} field") from exc
        payload = data.get("payload") or {}
        if not isinstance(ident, str) or not isinstance(host, str):
            raise ValueError("instance data: 'id' and 'host' must be strings")
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"instance data: 'port' must be an integer, got {port!r}")
        if not isinstance(payload, Mapping):
            raise ValueError("instance data: 'payload' must be a mapping")
        return cls(id=ident, host=host, port=port, payload=payload)
