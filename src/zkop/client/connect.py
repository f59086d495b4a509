"""How zkop finds and authenticates to its control-plane ZooKeeper.

Hosts: ``--zk``, else ``ZKOP_ZK``, else the local control plane that ``zkop up`` started.
Identity: ``ZKOP_AUTH=user:password``, else the local control plane's operator password
(``<state>/ensembles/control-plane/operator.password``, mode 0600). Every control-plane
znode carries a digest ACL for that identity, so anonymous clients can neither read nor
change resources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kazoo.security import make_digest_acl

from zkop.client.bridge import ZkClient
from zkop.errors import ConfigurationError
from zkop.platform.local import statedir
from zkop.zk import auth

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


def operator_password_file(state_dir: Path) -> Path:
    return state_dir / "ensembles" / statedir.CONTROL_PLANE / "operator.password"


def resolve(zk: str | None = None, state_dir: Path | None = None, root: str | None = None) -> Connection:
    hosts = zk or os.environ.get("ZKOP_ZK")
    creds = os.environ.get("ZKOP_AUTH")
    state = state_dir or statedir.resolve(None)
    if not hosts:
        from zkop.platform.local.ensemble import LocalEnsemble

        cp = LocalEnsemble(state, statedir.CONTROL_PLANE)
        if not cp.exists():
            raise ConfigurationError(
                f"no control plane: zkop is not up in {state} and neither --zk nor ZKOP_ZK is set",
                hint="run `zkop up -d`, or pass --zk host:port",
            )
        hosts = cp.connection_string()
    if creds:
        user, sep, password = creds.partition(":")
        if not sep or not user or not password:
            raise ConfigurationError("ZKOP_AUTH must look like user:password")
    else:
        user = OPERATOR_USER
        pw_file = operator_password_file(state)
        if not pw_file.parent.is_dir():
            raise ConfigurationError(
                f"no credentials for {hosts}: set ZKOP_AUTH=user:password",
                hint="the local control plane keeps them in its state dir; remote ones need ZKOP_AUTH",
            )
        password = auth.load_or_create_password(pw_file)
    return Connection(hosts=hosts, user=user, password=password, root=root or DEFAULT_ROOT)
