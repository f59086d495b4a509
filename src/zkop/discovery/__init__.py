"""zkop.discovery: a ZooKeeper service registry with client-side load balancing.

- :class:`AsyncServiceDiscovery` (:mod:`.aio`) / :class:`ServiceDiscovery` (:mod:`.sync`,
  blocking): a session, and ``provider("ns/app", strategy=...)`` for a service, kept
  current by watches (:class:`ServiceCache`, :mod:`.cache`);
- :class:`ServiceProvider` (:mod:`.provider`): ``get_instance(key)``, ``aget_instance``,
  ``call(key)``, ``note_error`` / ``note_success`` (the down-instance policy), over the
  strategies of :mod:`.strategies`;
- ``register(ns, app, instance, credentials=...)``: ephemeral self-registration with
  ``report_load`` (:class:`Registration`, :mod:`.registration`), with the service's
  registry identity (:class:`ServiceIdentity`);
- :class:`Proxy` (:mod:`.proxy`): an asyncio TCP proxy over a provider (``zkop proxy``);
- :mod:`zkop.discovery.registry`: the layout, ACLs and the operator's side
  (``publish_endpoint``, ``withdraw_endpoint``, ``ensure_service``, ``read_loads``) and who
  may write what.
"""

from zkop.discovery import registry
from zkop.discovery.aio import AsyncServiceDiscovery
from zkop.discovery.cache import ServiceCache
from zkop.discovery.instances import Instance
from zkop.discovery.provider import NoInstanceError, ServiceProvider
from zkop.discovery.proxy import Proxy, ProxyStats
from zkop.discovery.registration import Registration
from zkop.discovery.registry import (
    RegistryError,
    ServiceIdentity,
    ensure_service,
    publish_endpoint,
    read_loads,
    report_load,
    withdraw_endpoint,
)
from zkop.discovery.strategies import STRATEGY_NAMES, DownInstancePolicy, Picker, Strategy, make_strategy
from zkop.discovery.sync import ServiceDiscovery, SyncRegistration, SyncServiceProvider

__all__ = [
    "STRATEGY_NAMES",
    "AsyncServiceDiscovery",
    "DownInstancePolicy",
    "Instance",
    "NoInstanceError",
    "Picker",
    "Proxy",
    "ProxyStats",
    "Registration",
    "RegistryError",
    "ServiceCache",
    "ServiceDiscovery",
    "ServiceIdentity",
    "ServiceProvider",
    "Strategy",
    "SyncRegistration",
    "SyncServiceProvider",
    "ensure_service",
    "make_strategy",
    "publish_endpoint",
    "read_loads",
    "registry",
    "report_load",
    "withdraw_endpoint",
]
