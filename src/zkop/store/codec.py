"""Objects to znode bytes and back: the object znode holds apiVersion, kind, metadata and
spec; the status znode holds the status. Both are compact JSON with sorted keys."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from zkop.api import Resource, ResourceValidationError, parse_object, to_dict
from zkop.api.registry import KindInfo
from zkop.store.errors import CorruptObject, TooLarge

# Well under ZooKeeper's 1 MB jute.maxbuffer, leaving room for the rest of a transaction.
MAX_OBJECT_BYTES = 256 * 1024


def now() -> dt.datetime:
    """A timestamp as the store writes them (UTC, whole seconds)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def encode(obj: Resource) -> bytes:
    """The object znode's bytes: everything but the status and the resourceVersion."""
    data = to_dict(obj)
    data.pop("status", None)
    data.get("metadata", {}).pop("resourceVersion", None)
    raw = dumps(data)
    if len(raw) > MAX_OBJECT_BYTES:
        raise TooLarge(
            f"{obj.kind} {obj.key} is {len(raw)} bytes; the store takes at most {MAX_OBJECT_BYTES}",
            hint="move bulky data out of the spec",
        )
    return raw


def encode_status(obj: Resource) -> bytes:
    """The status znode's bytes."""
    raw = dumps(to_dict(obj).get("status") or {})
    if len(raw) > MAX_OBJECT_BYTES:
        raise TooLarge(f"status of {obj.kind} {obj.key} is {len(raw)} bytes; at most {MAX_OBJECT_BYTES}")
    return raw


def decode(path: str, info: KindInfo, raw: bytes, version: int, status_raw: bytes | None) -> Resource:
    """The object stored at ``path`` (``version``: the object znode's mzxid, which becomes
    ``metadata.resourceVersion``). Anything that is not a valid object of ``info``'s kind
    raises :class:`CorruptObject`."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptObject(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptObject(path, "not a JSON object")
    if data.get("kind") != info.kind:
        raise CorruptObject(path, f"kind is {data.get('kind')!r}, expected {info.kind}")
    if status_raw:
        try:
            data["status"] = json.loads(status_raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CorruptObject(path + "/status", f"not valid JSON ({exc})") from None
    meta = data.setdefault("metadata", {})
    if isinstance(meta, dict):
        meta["resourceVersion"] = str(version)
    try:
        return parse_object(data, source=path)
    except ResourceValidationError as exc:
        raise CorruptObject(path, str(exc)) from None


__all__ = ["MAX_OBJECT_BYTES", "decode", "dumps", "encode", "encode_status", "now"]
