"""zkop.dashboard: a live, read-only web page of the control plane, the ZooKeeper clusters, the
applications and the events, served by the Python process itself (``zkop dashboard``, or
``zkop operator run --dashboard`` on the operator's HTTP port).

- :mod:`~zkop.dashboard.views`: what the page shows, as pure functions of what was read;
- :mod:`~zkop.dashboard.gather`: reading it (store, watches, the leader record) and publishing;
- :mod:`~zkop.dashboard.feed`: the newest snapshot, and a wake-up for the event streams;
- :mod:`~zkop.dashboard.http`: the page, its assets (``static/``), JSON and server-sent events;
- :mod:`~zkop.dashboard.auth`: ``--listen`` and the token asked for beyond loopback.
"""

from zkop.dashboard.auth import Guard, is_loopback, parse_listen
from zkop.dashboard.feed import Feed
from zkop.dashboard.gather import Dashboard, LocalSources
from zkop.dashboard.http import DashboardHTTP

__all__ = ["Dashboard", "DashboardHTTP", "Feed", "Guard", "LocalSources", "is_loopback", "parse_listen"]
