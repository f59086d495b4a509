"""Manifest pieces shared by the members', the applications' and the handed-over Secrets."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any


def opaque_secret(metadata: Mapping[str, Any], data: Mapping[str, str]) -> dict[str, Any]:
    """An Opaque Secret holding ``data`` (plain text; encoded here as the API wants it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": dict(metadata),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


__all__ = ["opaque_secret"]
