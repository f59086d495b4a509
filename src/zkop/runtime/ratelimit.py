"""Rate limiters that decide how long a failed key waits before it is retried.

A rate limiter answers one question, ``when(key)``: "this key failed (again);
how many seconds from now may it run?". Asking *is* recording a failure: each
call counts as one retry. ``forget(key)`` clears the key's history after a
success, and ``num_requeues(key)`` tells how many failures are on record.

Three building blocks, combined by :func:`default_controller_rate_limiter`:

- :class:`ItemExponentialFailureRateLimiter`: per key, ``base * 2**failures``,
  capped. One flapping key does not slow the others.
- :class:`BucketRateLimiter`: one token bucket shared by all keys (``qps``
  tokens per second, at most ``burst`` saved up). It bounds the total retry
  rate when many keys fail at once, e.g. when ZooKeeper is unreachable.
- :class:`MaxOfRateLimiter`: the longest delay of several limiters.

Delays are relative to "now"; the limiters never sleep. Limiters that need time
take a ``clock`` (a callable returning monotonic seconds) so that tests can
drive them with a fake clock. None of them is thread-safe: use them from the
event loop that owns the work queue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

__all__ = [
    "BucketRateLimiter",
    "Clock",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "default_controller_rate_limiter",
]

Clock = Callable[[], float]
"""A callable returning monotonic seconds (``time.monotonic`` by default)."""

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)

# 2**1000 * any sane base is already far beyond any cap; larger exponents would overflow a float.
_MAX_EXPONENT = 1000


class RateLimiter(Protocol[K_contra]):
    """Decides the delay before a failed key is retried."""

    def when(self, key: K_contra) -> float:
        """Record one more failure of ``key``; return the delay in seconds (>= 0) before its retry."""
        ...

    def forget(self, key: K_contra) -> None:
        """Clear the failure history of ``key`` (call it after a success)."""
        ...

    def num_requeues(self, key: K_contra) -> int:
        """How many failures of ``key`` are on record."""
        ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """Per-key exponential backoff: the n-th consecutive failure waits ``base * 2**(n-1)``, at most ``cap``.

    With the defaults (5 ms, 1000 s) a key waits 5 ms, 10 ms, 20 ms, ... and reaches
    the cap after about 18 failures.
    """

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if not (math.isfinite(base) and base >= 0):
            raise ValueError(f"base must be a finite number of seconds >= 0, got {base!r}")
        if not (math.isfinite(cap) and cap >= base):
            raise ValueError(f"cap must be a finite number of seconds >= base ({base!r}), got {cap!r}")
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        exponent = self._failures.get(key, 0)
        self._failures[key] = exponent + 1
        return min(math.ldexp(self.base, min(exponent, _MAX_EXPONENT)), self.cap)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """A token bucket shared by every key: ``burst`` retries at once, then ``qps`` per second.

    Each call to :meth:`when` reserves the next token. While tokens are saved up
    the delay is 0; once the bucket is empty the reservations queue up behind one
    another, ``1/qps`` seconds apart. The bucket refills at ``qps`` tokens per
    second up to ``burst``. Keys are not distinguished, so :meth:`forget` does
    nothing and :meth:`num_requeues` is always 0.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock = time.monotonic) -> None:
        if not (math.isfinite(qps) and qps > 0):
            raise ValueError(f"qps must be a finite number > 0, got {qps!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        # May go negative: a negative balance is tokens already promised to future retries.
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: object) -> float:
        now = self._clock()
        elapsed = max(0.0, now - self._last)  # tolerate a clock that steps backwards
        self._last = max(self._last, now)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    def forget(self, key: object) -> None:
        return None

    def num_requeues(self, key: object) -> int:
        return 0

    @property
    def tokens(self) -> float:
        """Tokens saved up as of the last call (negative: retries already promised)."""
        return self._tokens


class MaxOfRateLimiter(Generic[K]):
    """The longest delay any of ``limiters`` asks for; every limiter records every failure."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one rate limiter")
        self.limiters: tuple[RateLimiter[K], ...] = limiters

    def when(self, key: K) -> float:
        return max(limiter.when(key) for limiter in self.limiters)

    def forget(self, key: K) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)


def default_controller_rate_limiter(*, clock: Clock = time.monotonic) -> RateLimiter[Hashable]:
    """Per-key backoff from 5 ms to 1000 s, under a global bucket of 10 retries/s with a burst of 100.

    The same defaults as controller-runtime. The result accepts keys of any hashable type.
    """
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter[Hashable](base=0.005, cap=1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )
