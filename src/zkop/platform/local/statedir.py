"""Where the local platform keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

from zkop.errors import ConfigurationError

CONTROL_PLANE = "control-plane"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zkop"


def resolve(option: str | Path | None = None, *, create: bool = True) -> Path:
    """``--state-dir``, then ``ZKOP_STATE_DIR``, then the user's state dir; must be writable."""
    raw = option or os.environ.get("ZKOP_STATE_DIR") or default_state_dir()
    path = Path(raw).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigurationError(
            f"state directory {path} is not a directory",
            hint="pass --state-dir or set ZKOP_STATE_DIR to a writable directory",
        )
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"state directory {path} cannot be created: {exc.strerror or exc}",
                hint="pass --state-dir or set ZKOP_STATE_DIR to a writable directory",
            ) from None
    if path.exists():
        # A real write: permission bits alone say nothing for root or read-only mounts.
        probe = path / f".write-probe-{os.getpid()}"
        try:
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigurationError(
                f"state directory {path} is not writable: {exc.strerror or exc}",
                hint="pass --state-dir or set ZKOP_STATE_DIR to a writable directory",
            ) from None
    return path
