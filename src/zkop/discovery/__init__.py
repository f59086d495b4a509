"""zkop.discovery: a ZooKeeper service registry with client-side load balancing."""

from zkop.discovery.client import (
    AsyncServiceDiscovery,
    Registration,
    ServiceCache,
    ServiceDiscovery,
    ServiceProvider,
    SyncRegistration,
    SyncServiceProvider,
)
from zkop.discovery.instances import Instance
from zkop.discovery.proxy import Proxy, ProxyStats
from zkop.discovery.strategies import STRATEGY_NAMES, DownInstancePolicy, Picker, make_strategy

__all__ = [
    "STRATEGY_NAMES",
    "AsyncServiceDiscovery",
    "DownInstancePolicy",
    "Instance",
    "Picker",
    "Proxy",
    "ProxyStats",
    "Registration",
    "ServiceCache",
    "ServiceDiscovery",
    "ServiceProvider",
    "SyncRegistration",
    "SyncServiceProvider",
    "make_strategy",
]
