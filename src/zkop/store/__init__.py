"""zkop.store: resources in ZooKeeper."""

from zkop.store.errors import AlreadyExists, Conflict, CorruptObject, Fenced, Forbidden, NotFound, StoreError, TooLarge
from zkop.store.events import EventRecord
from zkop.store.selector import Selector, parse_selector
from zkop.store.store import ListResult, Store
from zkop.store.watch import WatchEvent
from zkop.store.znodes import Fence

__all__ = [
    "AlreadyExists",
    "Conflict",
    "CorruptObject",
    "EventRecord",
    "Fence",
    "Fenced",
    "Forbidden",
    "ListResult",
    "NotFound",
    "Selector",
    "Store",
    "StoreError",
    "TooLarge",
    "WatchEvent",
    "parse_selector",
]
