"""Errors a user may see. Each says what went wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence


class ZkopError(Exception):
    """Base of every error zkop reports to a user (the CLI prints it as one line)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigurationError(ZkopError):
    """The environment is missing something zkop needs (Java, ZooKeeper, a writable dir)."""


class ValidationError(ZkopError):
    """Input was refused; nothing was written."""


class Fenced(ZkopError):
    """An action of a leadership term older than one already seen was refused: the caller was
    deposed. Raised by the store (a write's epoch check failed) and by every platform; the
    runtime stops the deposed replica's controllers instead of retrying."""


class Refused(ValidationError):
    """Several inputs were refused before anything was written; ``errors`` holds each one's."""

    def __init__(self, errors: Sequence[ZkopError], *, what: str = "applied") -> None:
        self.errors = list(errors)
        body = "\n".join(str(e) for e in self.errors)
        super().__init__(f"{body}\nnothing was {what}")
