"""Property tests of the work queue contract and the rate limiters.

Two views of the queue:

- a model-based one: a random sequence of add / get / done (and a drain shutdown
  somewhere in it) is applied to the queue and to a tiny reference model; every
  key handed out must be the model's FIFO head, and every run must be "owed"
  (an add happened since the key's previous run started);
- a concurrent one: several worker tasks and a producer, with hypothesis choosing
  how many times each yields to the loop, i.e. the interleaving.

Both check: no key is processed twice at once, every added key runs after its
last add (nothing is lost), and no run happens that the contract does not call for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from itertools import cycle, pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from zkop.runtime.ratelimit import BucketRateLimiter, ItemExponentialFailureRateLimiter
from zkop.runtime.workqueue import ShutDown, WorkQueue

KEYS = ["a", "b", "c", "d"]


@dataclass
class Model:
    queue: deque[str] = field(default_factory=deque)
    dirty: set[str] = field(default_factory=set)
    processing: list[str] = field(default_factory=list)
    owed: set[str] = field(default_factory=set)  # keys with an add since their last run started
    shutting_down: bool = False

    def add(self, key: str) -> None:
        if self.shutting_down:
            return
        self.owed.add(key)
        if key in self.dirty:
            return
        self.dirty.add(key)
        if key not in self.processing:
            self.queue.append(key)

    def get(self) -> str:
        key = self.queue.popleft()
        self.dirty.discard(key)
        self.processing.append(key)
        return key

    def done(self, key: str) -> None:
        self.processing.remove(key)
        if key in self.dirty:
            self.queue.append(key)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(KEYS)),
        st.tuples(st.just("get"), st.just("")),
        st.tuples(st.just("done"), st.integers(min_value=0, max_value=7).map(str)),
    ),
    max_size=60,
)


async def run_model_check(steps: list[tuple[str, str]], shutdown_at: int | None) -> None:
    q: WorkQueue[str] = WorkQueue()
    model = Model()
    shutdown: asyncio.Task[bool] | None = None

    async def take() -> None:
        expected = model.get()
        key = await asyncio.wait_for(q.get(), 1)  # something is queued, so this does not wait
        assert key == expected, "not FIFO"
        assert key in model.owed, f"extra run of {key!r}"
        model.owed.discard(key)

    def check() -> None:
        assert len(q) == len(model.queue)
        assert q.processing == len(model.processing)
        assert len(set(model.processing)) == len(model.processing), "a key processed twice at once"

    for i, (op, arg) in enumerate(steps):
        if i == shutdown_at:
            shutdown = asyncio.create_task(q.shutdown(drain=True, timeout=5))
            await asyncio.sleep(0)  # let it start: from here on adds are ignored
            assert q.shutting_down
            model.shutting_down = True
        if op == "add":
            q.add(arg)
            model.add(arg)
        elif op == "get":
            if model.queue:
                await take()
            elif model.shutting_down and not model.dirty:
                try:
                    await asyncio.wait_for(q.get(), 1)
                except ShutDown:
                    pass
                else:
                    raise AssertionError("get() after a finished drain must raise ShutDown")
        elif model.processing:
            key = model.processing[int(arg) % len(model.processing)]
            q.done(key)
            model.done(key)
        check()

    # Finish: every owed run happens, then nothing more.
    while model.queue or model.processing:
        for key in list(model.processing):
            q.done(key)
            model.done(key)
        while model.queue:
            await take()
        check()
    if model.shutting_down:
        assert shutdown is not None
        assert await shutdown is True
    else:
        assert model.owed == set(), f"lost: {model.owed}"
        assert await q.shutdown(drain=True, timeout=5) is True
    assert model.owed == set(), f"lost: {model.owed}"
    try:
        await asyncio.wait_for(q.get(), 1)
    except ShutDown:
        pass
    else:
        raise AssertionError("get() after shutdown must raise ShutDown")


@settings(max_examples=300, deadline=None)
@given(steps=ops, shutdown_at=st.one_of(st.none(), st.integers(min_value=0, max_value=60)))
def test_queue_matches_the_model(steps: list[tuple[str, str]], shutdown_at: int | None) -> None:
    asyncio.run(run_model_check(steps, shutdown_at))


async def run_concurrent(
    adds: list[tuple[str, int]], worker_yields: list[int], workers: int, readd: list[bool]
) -> None:
    q: WorkQueue[str] = WorkQueue()
    in_flight: set[str] = set()
    owed: set[str] = set()
    ran_after_last_add: dict[str, bool] = {}
    violations: list[str] = []
    yields = cycle(worker_yields or [0])
    readds = cycle(readd or [False])

    def add(key: str) -> None:
        q.add(key)
        owed.add(key)
        ran_after_last_add[key] = False

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            # Recorded, not asserted here: an exception would kill the worker and stall the drain.
            if key in in_flight:
                violations.append(f"{key!r} processed twice at once")
            if key not in owed:
                violations.append(f"extra run of {key!r}")
                if len(violations) > 100:  # runaway: stop instead of spinning
                    q.done(key)
                    return
            owed.discard(key)
            ran_after_last_add[key] = True
            in_flight.add(key)
            again = next(readds) and not q.shutting_down
            # A reconcile that re-adds its key must await something, as real ones do (I/O);
            # one that never yields would keep the loop to itself forever.
            for _ in range(max(next(yields), 1 if again else 0)):
                await asyncio.sleep(0)
            if again and not q.shutting_down:
                add(key)  # e.g. a watch event arriving mid-reconcile
            in_flight.discard(key)
            q.done(key)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for key, pause in adds:
        add(key)
        for _ in range(pause):
            await asyncio.sleep(0)
    drained = await q.shutdown(drain=True, timeout=2)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert violations == []
    assert drained
    assert owed == set(), f"lost: {owed}"
    assert all(ran_after_last_add.values())


@settings(max_examples=150, deadline=None)
@given(
    adds=st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 3)), max_size=40),
    worker_yields=st.lists(st.integers(0, 4), max_size=10),
    workers=st.integers(1, 6),
    readd=st.lists(st.booleans(), max_size=5),
)
def test_concurrent_workers_keep_the_contract(
    adds: list[tuple[str, int]], worker_yields: list[int], workers: int, readd: list[bool]
) -> None:
    asyncio.run(run_concurrent(adds, worker_yields, workers, readd))


# ---------------------------------------------------------------------------- rate limiters


@given(
    base=st.floats(min_value=0.0001, max_value=1),
    factor=st.floats(min_value=1, max_value=1e6),
    failures=st.integers(1, 80),
)
def test_backoff_doubles_up_to_the_cap_and_forget_resets(base: float, factor: float, failures: int) -> None:
    cap = base * factor
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(base=base, cap=cap)
    delays = [limiter.when("k") for _ in range(failures)]
    assert delays[0] == min(base, cap)
    for n, delay in enumerate(delays):
        assert delay == min(base * 2.0**n, cap)
    assert delays == sorted(delays)
    assert limiter.num_requeues("k") == failures
    limiter.forget("k")
    assert limiter.when("k") == delays[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(
    qps=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=80),
)
def test_token_bucket_never_exceeds_burst_plus_rate(qps: float, burst: int, gaps: list[float]) -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=qps, burst=burst, clock=clock)
    granted: list[float] = []
    for gap in gaps:
        clock.now += gap
        delay = bucket.when("x")
        assert delay >= 0
        granted.append(clock.now + delay)
    # Retries are released in call order...
    assert all(b >= a - 1e-9 for a, b in pairwise(granted))
    # ...and no window holds more than the burst plus what the rate refills in it.
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            assert j - i + 1 <= burst + qps * (granted[j] - granted[i]) + 1e-6
