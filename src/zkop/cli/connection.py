"""Which control plane a command talks to: the one ``--zk`` / ``ZKOP_ZK`` and ``ZKOP_AUTH``
name, else the local one ``zkop up`` started, found in the state dir (its members, and the
operator password it keeps in ``ensembles/control-plane/operator.password``, mode 0600).
Every command, ``zkop operator run``, ``zkop keeper`` and the demo connect through here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zkop.client import connect
from zkop.errors import ConfigurationError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.zk import auth


def operator_password_file(state_dir: Path) -> Path:
    return state_dir / "ensembles" / statedir.CONTROL_PLANE / "operator.password"


@dataclass(frozen=True)
class LocalControlPlane:
    """The control plane ``zkop up`` started in ``state_dir``."""

    state_dir: Path

    def hosts(self) -> str:
        cp = LocalEnsemble(self.state_dir, statedir.CONTROL_PLANE)
        if not cp.exists():
            raise ConfigurationError(
                f"no control plane: zkop is not up in {self.state_dir} and neither --zk nor ZKOP_ZK is set",
                hint="run `zkop up -d`, or pass --zk host:port",
            )
        return cp.connection_string()

    def password(self, hosts: str) -> str:
        pw_file = operator_password_file(self.state_dir)
        if not pw_file.parent.is_dir():
            raise ConfigurationError(
                f"no credentials for {hosts}: set ZKOP_AUTH=user:password",
                hint="the local control plane keeps them in its state dir; remote ones need ZKOP_AUTH",
            )
        return auth.load_or_create_password(pw_file)


def resolve(zk: str | None = None, state_dir: Path | None = None, root: str | None = None) -> connect.Connection:
    """The connection: ``zk``, ``ZKOP_ZK`` and ``ZKOP_AUTH`` first, the local control plane in
    ``state_dir`` (default: the usual state dir) for what they leave open."""
    local = LocalControlPlane(state_dir or statedir.resolve(None))
    return connect.resolve(zk, root=root, local=local)
