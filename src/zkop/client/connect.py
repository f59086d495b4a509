"""How zkop reaches its control-plane ZooKeeper: hosts, identity and root, as a Connection.

Hosts: the ``zk`` given (``--zk``), else ``ZKOP_ZK``, else ``local.hosts()``.
Identity: ``ZKOP_AUTH=user:password``, else the operator identity ``zkop`` with
``local.password(hosts)``. Every control-plane znode carries a digest ACL for that identity,
so anonymous clients can neither read nor change resources.

``local`` is how the caller finds a control plane on its own machine (the CLI's,
:mod:`zkop.cli.connection`, looks in the state dir for the one ``zkop up`` started);
without it, hosts and identity come from the arguments and the environment only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from kazoo.security import make_digest_acl

from zkop.client.bridge import ZkClient
from zkop.errors import ConfigurationError

OPERATOR_USER = "zkop"
DEFAULT_ROOT = "/zkop"


@dataclass(frozen=True)
class Connection:
    hosts: str
    user: str
    password: str
    root: str = DEFAULT_ROOT
    extra_auth: tuple[tuple[str, str], ...] = field(default=())

    @property
    def auth_data(self) -> list[tuple[str, str]]:
        return [("digest", f"{self.user}:{self.password}"), *self.extra_auth]

    def acl(self) -> list[Any]:
        return [make_digest_acl(self.user, self.password, all=True)]

    def client(self, session_timeout: float = 10.0) -> ZkClient:
        return ZkClient(self.hosts, auth_data=self.auth_data, session_timeout=session_timeout)


class LocalControlPlane(Protocol):
    """A control plane found on this machine, for when neither arguments nor the environment
    name one. Each method raises :class:`ConfigurationError` saying what is missing."""

    def hosts(self) -> str: ...

    def password(self, hosts: str) -> str:
        """The operator identity's password for ``hosts``."""
        ...


def resolve(zk: str | None = None, root: str | None = None, *, local: LocalControlPlane | None = None) -> Connection:
    """The connection from ``zk``, ``ZKOP_ZK`` and ``ZKOP_AUTH``, and ``local`` for what
    they leave open; :class:`ConfigurationError` says what is missing."""
    hosts = zk or os.environ.get("ZKOP_ZK")
    creds = os.environ.get("ZKOP_AUTH")
    if not hosts:
        if local is None:
            raise ConfigurationError("no control plane: neither --zk nor ZKOP_ZK is set", hint="pass --zk host:port")
        hosts = local.hosts()
    if creds:
        user, sep, password = creds.partition(":")
        if not sep or not user or not password:
            raise ConfigurationError("ZKOP_AUTH must look like user:password")
    elif local is not None:
        user, password = OPERATOR_USER, local.password(hosts)
    else:
        raise ConfigurationError(f"no credentials for {hosts}: set ZKOP_AUTH=user:password")
    return Connection(hosts=hosts, user=user, password=password, root=root or DEFAULT_ROOT)
