"""The discovery clients under their first import path, ``zkop.discovery.client``.

Nothing is defined here: each job has its module, and this one re-exports their names so
that ``from zkop.discovery.client import ...`` keeps working. New code imports from
:mod:`zkop.discovery` (the public API) or from the module that does the job:

- :mod:`.cache`: :class:`ServiceCache`, a service's endpoints kept current by watches;
- :mod:`.provider`: :class:`ServiceProvider` (picking, the down-instance policy) and
  :class:`NoInstanceError`;
- :mod:`.registration`: :class:`Registration`, ephemeral self-registration;
- :mod:`.aio`: :class:`AsyncServiceDiscovery`, the asyncio entry point;
- :mod:`.sync`: :class:`ServiceDiscovery`, the blocking API on a loop thread of its own.
"""

from __future__ import annotations

from zkop.discovery.aio import AsyncServiceDiscovery
from zkop.discovery.cache import ServiceCache
from zkop.discovery.provider import NoInstanceError, ServiceProvider
from zkop.discovery.registration import Registration
from zkop.discovery.sync import ServiceDiscovery, SyncRegistration, SyncServiceProvider

__all__ = [
    "AsyncServiceDiscovery",
    "NoInstanceError",
    "Registration",
    "ServiceCache",
    "ServiceDiscovery",
    "ServiceProvider",
    "SyncRegistration",
    "SyncServiceProvider",
]
