"""Unit tests of the work queue, its rate limiters, and Request/Result."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable

import pytest

from zkop.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from zkop.runtime.result import Request, Result
from zkop.runtime.workqueue import MetricsProvider, NullMetrics, ShutDown, WorkQueue


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FixedDelays:
    """A rate limiter returning scripted delays, recording what it was asked."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = list(delays)
        self.asked: list[str] = []
        self.forgotten: list[str] = []

    def when(self, key: str) -> float:
        self.asked.append(key)
        return self.delays.pop(0)

    def forget(self, key: str) -> None:
        self.forgotten.append(key)

    def num_requeues(self, key: str) -> int:
        return self.asked.count(key)


async def step_loop(times: int = 5) -> None:
    """Let every ready task run a few steps (deterministic loop stepping, not a timed wait)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def get_soon(q: WorkQueue[str], timeout: float = 2.0) -> str:
    return await asyncio.wait_for(q.get(), timeout)


async def drain_all(q: WorkQueue[str]) -> list[str]:
    """Hand out and finish everything that is ready now."""
    seen = []
    while len(q):
        key = await q.get()
        seen.append(key)
        q.done(key)
    return seen


# ---------------------------------------------------------------------------- stingy / fair


async def test_no_key_processed_by_two_workers_at_once() -> None:
    rng = random.Random(1234)
    q: WorkQueue[str] = WorkQueue(name="stingy")
    keys = [f"ns/k{i}" for i in range(10)]
    in_flight: set[str] = set()
    violations: list[str] = []
    runs: Counter[str] = Counter()
    tick = 0
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}

    async def worker() -> None:
        nonlocal tick
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in in_flight:
                violations.append(key)
            in_flight.add(key)
            tick += 1
            last_start[key] = tick
            runs[key] += 1
            for _ in range(rng.randint(0, 4)):
                await asyncio.sleep(0)
            in_flight.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(16)]
    for _ in range(200):
        key = rng.choice(keys)
        q.add(key)
        tick += 1
        last_add[key] = tick
        for _ in range(rng.randint(0, 2)):
            await asyncio.sleep(0)
    assert await q.shutdown(drain=True, timeout=5)
    await asyncio.wait_for(asyncio.gather(*workers), 5)

    assert violations == []
    assert set(runs) == set(last_add)
    for key, added in last_add.items():
        assert last_start[key] > added, f"{key} was not processed after its last add"
    assert sum(runs.values()) <= 200


async def test_repeated_adds_coalesce() -> None:
    q: WorkQueue[str] = WorkQueue()
    for _ in range(100):
        q.add("a")
    assert len(q) == 1
    assert q.adds == 1
    assert await drain_all(q) == ["a"]
    assert len(q) == 0


async def test_add_during_processing_runs_exactly_once_more() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    other_worker = asyncio.create_task(q.get())
    for _ in range(5):
        q.add("a")
    # Not handed out while being processed: nothing is ready.
    assert len(q) == 0
    assert q.processing == 1
    q.done(key)
    assert await asyncio.wait_for(other_worker, 2) == "a"
    q.done("a")
    assert len(q) == 0
    assert q.processing == 0
    assert q.adds == 2


async def test_fifo_among_distinct_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in "abcd":
        q.add(key)
    q.add("a")  # coalesces, keeps its place
    first = await q.get()
    assert first == "a"
    q.add("a")  # dirty while processing
    q.add("e")
    q.done("a")  # re-queued behind everything already queued
    assert await drain_all(q) == ["b", "c", "d", "e", "a"]


async def test_done_for_a_key_not_handed_out_is_an_error() -> None:
    q: WorkQueue[str] = WorkQueue()
    with pytest.raises(ValueError, match="not being processed"):
        q.done("a")
    q.add("a")
    key = await q.get()
    q.done(key)
    with pytest.raises(ValueError, match="exactly once"):
        q.done(key)


async def test_cancelled_getter_does_not_swallow_a_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await step_loop()  # both are parked waiting
    q.add("a")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it can take the key
    assert await asyncio.wait_for(second, 2) == "a"
    with pytest.raises(asyncio.CancelledError):
        await first


# ---------------------------------------------------------------------------- rate limiters


def test_exponential_backoff_grows_caps_and_resets() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(base=0.01, cap=1.0)
    delays = [limiter.when("a") for _ in range(10)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0])
    assert limiter.num_requeues("a") == 10
    assert limiter.when("b") == pytest.approx(0.01)  # per key
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.01)


def test_exponential_backoff_does_not_overflow() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(base=0.005, cap=1000)
    for _ in range(5000):
        delay = limiter.when("a")
    assert delay == 1000


def test_rate_limiter_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="cap"):
        ItemExponentialFailureRateLimiter(base=2.0, cap=1.0)
    with pytest.raises(ValueError, match="qps"):
        BucketRateLimiter(qps=0)
    with pytest.raises(ValueError, match="burst"):
        BucketRateLimiter(burst=0)
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter[str]()


def test_token_bucket_allows_a_burst_then_spaces_by_qps() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [bucket.when("x") for _ in range(6)] == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    clock.advance(0.3)  # the promised tokens are paid back; the bucket is empty
    assert bucket.when("x") == pytest.approx(0.1)
    clock.advance(60)  # refills only up to the burst
    assert [bucket.when("x") for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])
    assert bucket.num_requeues("x") == 0


def test_token_bucket_tolerates_a_clock_stepping_back() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=1, burst=1, clock=clock)
    assert bucket.when("x") == 0
    clock.advance(-5)
    assert bucket.when("x") == pytest.approx(1.0)


def test_max_of_takes_the_longest_delay_and_forgets_everywhere() -> None:
    clock = FakeClock()
    per_key: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(base=0.05, cap=10)
    limiter = MaxOfRateLimiter(per_key, BucketRateLimiter(qps=10, burst=2, clock=clock))
    # bucket: 0, 0, 0.1, 0.2 ; per key a: 0.05, 0.1 ; b: 0.05, 0.1
    assert limiter.when("a") == pytest.approx(0.05)
    assert limiter.when("b") == pytest.approx(0.05)
    assert limiter.when("a") == pytest.approx(0.1)
    assert limiter.when("b") == pytest.approx(0.2)
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_controller_rate_limiter() -> None:
    clock = FakeClock()
    limiter: RateLimiter[str] = default_controller_rate_limiter(clock=clock)
    assert [limiter.when("a") for _ in range(3)] == pytest.approx([0.005, 0.01, 0.02])
    for i in range(97):
        limiter.when(f"k{i}")
    # The burst of 100 is used up: the next retry waits for the bucket, not the 5 ms backoff.
    assert limiter.when("new") == pytest.approx(0.1)


async def test_add_rate_limited_uses_the_limiter_delay() -> None:
    limiter = FixedDelays([0.0, 30.0])
    q: WorkQueue[str] = WorkQueue(rate_limiter=limiter)
    q.add_rate_limited("a")  # 0 s: ready at once
    assert len(q) == 1
    q.add_rate_limited("b")  # 30 s: waiting
    assert len(q) == 1
    assert q.waiting == 1
    assert q.retries == 2
    assert q.num_requeues("a") == 1
    q.forget("a")
    assert limiter.forgotten == ["a"]
    await q.shutdown(drain=False)
    assert q.waiting == 0


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter[str](
        ItemExponentialFailureRateLimiter(base=0.002, cap=0.05),
        BucketRateLimiter(qps=1000, burst=100, clock=clock),
    )
    q: WorkQueue[str] = WorkQueue(rate_limiter=limiter)
    for expected_requeues in (1, 2, 3):
        q.add_rate_limited("a")
        assert len(q) == 0  # delayed, never immediate
        key = await get_soon(q)
        assert key == "a"
        assert q.num_requeues("a") == expected_requeues
        q.done(key)
    q.forget("a")
    assert q.num_requeues("a") == 0
    assert q.retries == 3


# ---------------------------------------------------------------------------- delays


async def test_add_after_delays_the_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("a", 0.05)
    assert len(q) == 0
    assert q.waiting == 1
    assert await get_soon(q) == "a"
    assert loop.time() - start >= 0.04  # loose: only "not early"
    assert q.waiting == 0


async def test_add_after_orders_by_ready_time() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("late", 0.06)
    q.add_after("early", 0.02)
    q.add_after("now", 0)
    got = []
    for _ in range(3):
        key = await get_soon(q)
        got.append(key)
        q.done(key)
    assert got == ["now", "early", "late"]


async def test_add_after_keeps_the_earliest_time_for_a_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 60)
    q.add_after("a", 0.01)  # earlier: replaces
    q.add_after("b", 0.01)
    q.add_after("b", 60)  # later: ignored
    assert q.waiting == 2
    got = {await get_soon(q), await get_soon(q)}
    assert got == {"a", "b"}
    assert q.waiting == 0


async def test_add_after_of_a_key_in_processing_runs_once_more_after_done() -> None:
    fired = asyncio.Event()

    class Watch(NullMetrics):
        def on_add(self, queue: str) -> None:
            fired.set()

    q: WorkQueue[str] = WorkQueue(metrics=Watch())
    q.add("a")
    key = await q.get()
    fired.clear()
    q.add_after("a", 0.01)
    await asyncio.wait_for(fired.wait(), 2)
    assert len(q) == 0  # dirty, not handed out while processing
    q.done(key)
    assert len(q) == 1


async def test_add_after_rejects_non_finite_delays() -> None:
    q: WorkQueue[str] = WorkQueue()
    with pytest.raises(ValueError, match="finite"):
        q.add_after("a", float("nan"))
    with pytest.raises(ValueError, match="finite"):
        q.add_after("a", float("inf"))
    q.add_after("a", -1)
    assert len(q) == 1


# ---------------------------------------------------------------------------- shutdown


async def test_get_on_a_shut_down_empty_queue_raises() -> None:
    q: WorkQueue[str] = WorkQueue(name="things")
    assert await q.shutdown()
    assert q.shutting_down
    with pytest.raises(ShutDown, match="'things' is shut down") as err:
        await q.get()
    assert "worker should return" in str(err.value)


async def test_shutdown_releases_idle_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    idle = [asyncio.create_task(q.get()) for _ in range(3)]
    await step_loop()
    assert await asyncio.wait_for(q.shutdown(drain=True), 2)
    for task in idle:
        with pytest.raises(ShutDown):
            await task


async def test_shutdown_drain_processes_queued_keys_and_owed_reruns() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in "abc":
        q.add(key)
    first = await q.get()  # "a" in processing...
    q.add(first)  # ...and owed one more run
    q.add_after("z", 60)  # delayed keys are dropped at shutdown
    release = asyncio.Event()
    processed: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            await release.wait()
            processed.append(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(2)]
    shutdown = asyncio.create_task(q.shutdown(drain=True))
    await step_loop()
    q.add("late")  # ignored: shutting down
    assert not shutdown.done()
    release.set()
    q.done(first)
    assert await asyncio.wait_for(shutdown, 2) is True
    await asyncio.wait_for(asyncio.gather(*workers), 2)
    assert sorted(processed) == ["a", "b", "c"]
    assert q.waiting == 0
    assert q.processing == 0


async def test_shutdown_drain_timeout_drops_what_is_left() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await q.shutdown(drain=True, timeout=0.02) is False
    assert len(q) == 0
    with pytest.raises(ShutDown):
        await q.get()


async def test_shutdown_cancel_drops_queued_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in "abc":
        q.add(key)
    key = await q.get()
    q.add(key)  # owed a re-run, which cancel drops
    assert await q.shutdown(drain=False) is False
    assert len(q) == 0
    with pytest.raises(ShutDown):
        await q.get()
    q.done(key)  # still allowed; queues nothing
    assert len(q) == 0
    assert q.processing == 0
    q.add("d")
    q.add_rate_limited("d")
    q.add_after("d", 0.01)
    assert len(q) == 0
    assert q.waiting == 0
    assert await q.shutdown(drain=True, timeout=1) is True  # idempotent; nothing left


async def test_shutdown_cancel_of_an_idle_queue_reports_success() -> None:
    q: WorkQueue[str] = WorkQueue()
    assert await q.shutdown(drain=False) is True


# ---------------------------------------------------------------------------- metrics


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_add(self, queue: str) -> None:
        self.events.append(("add", queue))

    def on_retry(self, queue: str) -> None:
        self.events.append(("retry", queue))

    def on_depth(self, queue: str, depth: int) -> None:
        self.events.append(("depth", depth))

    def on_queue_latency(self, queue: str, seconds: float) -> None:
        self.events.append(("latency", seconds))

    def on_work_duration(self, queue: str, seconds: float) -> None:
        self.events.append(("work", seconds))


async def test_metrics_properties_and_callbacks() -> None:
    clock = FakeClock()
    recorder = Recorder()
    provider: MetricsProvider = recorder
    q: WorkQueue[str] = WorkQueue(name="m", metrics=provider, clock=clock, rate_limiter=FixedDelays([0.0]))
    q.add("a")
    q.add("a")
    q.add("b")
    assert (q.depth, q.adds) == (2, 2)
    clock.advance(2)
    a = await q.get()
    clock.advance(1)
    b = await q.get()
    clock.advance(3)
    assert q.longest_running_processor_seconds() == pytest.approx(4)
    assert q.unfinished_work_seconds() == pytest.approx(7)
    stats = q.stats()
    assert (stats.name, stats.depth, stats.processing, stats.adds, stats.retries) == ("m", 0, 2, 2, 0)
    q.done(a)
    q.done(b)
    q.add_rate_limited("c")
    assert q.longest_running_processor_seconds() == 0
    assert q.unfinished_work_seconds() == 0
    assert recorder.events == [
        ("add", "m"),
        ("depth", 1),
        ("add", "m"),
        ("depth", 2),
        ("depth", 1),
        ("latency", pytest.approx(2)),
        ("depth", 0),
        ("latency", pytest.approx(3)),
        ("work", pytest.approx(4)),
        ("work", pytest.approx(3)),
        ("retry", "m"),
        ("add", "m"),
        ("depth", 1),
    ]


async def test_a_failing_metrics_callback_does_not_break_the_queue(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(NullMetrics):
        def on_depth(self, queue: str, depth: int) -> None:
            raise RuntimeError("boom")

    q: WorkQueue[str] = WorkQueue(metrics=Broken())
    with caplog.at_level(logging.ERROR):
        q.add("a")
        assert await q.get() == "a"
    q.done("a")
    assert "metrics callback" in caplog.text


# ---------------------------------------------------------------------------- Request / Result


def test_request_key_round_trip() -> None:
    request = Request("default", "web")
    assert request.key == "default/web"
    assert str(request) == "default/web"
    assert Request.from_key("default/web") == request
    assert Request.from_key("cluster-scoped") == Request("", "cluster-scoped")
    assert Request("", "cluster-scoped").key == "cluster-scoped"


@pytest.mark.parametrize("bad", ["", "/", "a/", "/b", "a/b/c"])
def test_request_from_bad_key(bad: str) -> None:
    with pytest.raises(ValueError):
        Request.from_key(bad)


def test_result_defaults_and_validation() -> None:
    assert Result().is_done
    assert not Result(requeue=True).is_done
    assert not Result(requeue_after=5).is_done
    bad: list[Callable[[], Result]] = [
        lambda: Result(requeue_after=-1),
        lambda: Result(requeue_after=float("nan")),
        lambda: Result(requeue_after=float("inf")),
    ]
    for make in bad:
        with pytest.raises(ValueError, match="requeue_after"):
            make()
