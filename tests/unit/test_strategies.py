"""Load-balancing strategies, the down-instance policy and the Picker."""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkop.discovery.instances import Instance
from zkop.discovery.strategies import (
    STRATEGY_NAMES,
    ConsistentHash,
    DownInstancePolicy,
    LeastConnections,
    Picker,
    RandomChoice,
    RoundRobin,
    Sticky,
    Strategy,
    make_strategy,
    stable_hash,
)


def inst(ident: str, port: int = 8080) -> Instance:
    return Instance(id=ident, host=f"{ident}.local", port=port)


def insts(*ids: str) -> list[Instance]:
    return [inst(i) for i in ids]


def ids_of(instances: list[Instance | None]) -> list[str | None]:
    return [i.id if i is not None else None for i in instances]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- Instance ------------------------------------------------------------------------------


class TestInstance:
    def test_address(self) -> None:
        assert Instance("a", "10.0.0.1", 80).address == "10.0.0.1:80"
        assert Instance("a", "::1", 2181).address == "[::1]:2181"
        assert Instance("a", "[::1]", 2181).address == "[::1]:2181"

    def test_payload_is_a_private_read_only_copy(self) -> None:
        meta = {"zone": "a"}
        one = Instance("a", "h", 1, meta)
        meta["zone"] = "b"
        assert one.payload["zone"] == "a"
        with pytest.raises(TypeError):
            one.payload["zone"] = "c"  # type: ignore[index]

    def test_hashable_and_compared_by_value(self) -> None:
        one = Instance("a", "h", 1, {"v": 1})
        assert one == Instance("a", "h", 1, {"v": 1})
        assert one != Instance("a", "h", 1, {"v": 2})
        assert len({one, Instance("a", "h", 1, {"v": 1})}) == 1

    @pytest.mark.parametrize(("ident", "host", "port"), [("", "h", 1), ("a", "", 1), ("a", "h", 0), ("a", "h", 70000)])
    def test_invalid(self, ident: str, host: str, port: int) -> None:
        with pytest.raises(ValueError):
            Instance(ident, host, port)

    def test_dict_round_trip(self) -> None:
        one = Instance("a", "h", 1, {"zone": "z"})
        assert Instance.from_dict(one.to_dict()) == one
        with pytest.raises(ValueError, match="port"):
            Instance.from_dict({"id": "a", "host": "h"})
        with pytest.raises(ValueError, match="port"):
            Instance.from_dict({"id": "a", "host": "h", "port": "80"})


# -- the registry of names -----------------------------------------------------------------


class TestMakeStrategy:
    @pytest.mark.parametrize(
        ("name", "kind"),
        [
            ("round_robin", RoundRobin),
            ("Round-Robin", RoundRobin),
            ("random", RandomChoice),
            ("least_connections", LeastConnections),
            ("consistent_hash", ConsistentHash),
            ("sticky", Sticky),
        ],
    )
    def test_names(self, name: str, kind: type) -> None:
        made = make_strategy(name)
        assert isinstance(made, kind)
        assert isinstance(made, Strategy)

    def test_all_names_listed(self) -> None:
        assert set(STRATEGY_NAMES) == {
            "round_robin",
            "random",
            "least_connections",
            "consistent_hash",
            "sticky",
        }

    def test_unknown_name_lists_the_allowed_ones(self) -> None:
        with pytest.raises(ValueError) as err:
            make_strategy("fastest")
        for name in STRATEGY_NAMES:
            assert name in str(err.value)

    def test_options(self) -> None:
        ring = make_strategy("consistent_hash", vnodes=10, epsilon=0.5)
        assert isinstance(ring, ConsistentHash)
        assert (ring.vnodes, ring.epsilon) == (10, 0.5)
        sticky = make_strategy("sticky", inner="random", rng=random.Random(1))
        assert isinstance(sticky, Sticky) and isinstance(sticky.inner, RandomChoice)
        inner = LeastConnections()
        sticky = make_strategy("sticky", inner=inner)
        assert isinstance(sticky, Sticky) and sticky.inner is inner

    def test_bad_options(self) -> None:
        with pytest.raises(ValueError, match="vnodes"):
            make_strategy("round_robin", vnodes=3)
        with pytest.raises(ValueError, match="epsilon"):
            make_strategy("consistent_hash", epsilon=0)
        with pytest.raises(ValueError, match="vnodes"):
            make_strategy("consistent_hash", vnodes=0)
        with pytest.raises(ValueError, match="sticky"):
            make_strategy("sticky", inner=RoundRobin(), rng=random.Random())


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_no_instances_gives_none(name: str) -> None:
    strategy = make_strategy(name)
    assert strategy.pick([]) is None
    assert strategy.pick([], key="k") is None


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_duplicates_count_once_and_the_last_wins(name: str) -> None:
    old, new = Instance("a", "old", 1), Instance("a", "new", 1)
    chosen = make_strategy(name).pick([old, new], key="k")
    assert chosen is new


# -- round robin ---------------------------------------------------------------------------


class TestRoundRobin:
    def test_rotates_in_id_order_whatever_the_list_order(self) -> None:
        rr = RoundRobin(random.Random(0))
        first = rr.pick(insts("c", "a", "b"))
        assert first is not None
        order = ["a", "b", "c"]
        start = order.index(first.id)
        picks = ids_of([rr.pick(insts("b", "c", "a")) for _ in range(6)])
        assert picks == [order[(start + 1 + i) % 3] for i in range(6)]

    @pytest.mark.parametrize(
        ("last", "now_present", "expected"),
        [
            ("b", ["a", "b", "c", "d"], "c"),  # plain rotation
            ("b", ["a", "b", "d"], "d"),  # next one removed: skip it, no double turn
            ("b", ["a", "c", "d"], "c"),  # the last one itself removed
            ("b", ["a", "b", "ba", "c"], "ba"),  # a new one joins in order
            ("d", ["a", "b", "c", "d"], "a"),  # wrap around
            ("z", ["a", "b"], "a"),  # wrap around after a removal at the end
        ],
    )
    def test_membership_changes(self, last: str, now_present: list[str], expected: str) -> None:
        rr = RoundRobin()
        rr._last = last
        chosen = rr.pick(insts(*now_present))
        assert chosen is not None and chosen.id == expected

    def test_random_start_spreads_new_clients(self) -> None:
        seeds = random.Random(7)
        firsts = Counter(
            ids_of([RoundRobin(random.Random(seeds.random())).pick(insts("a", "b", "c"))])[0] for _ in range(300)
        )
        assert set(firsts) == {"a", "b", "c"}

    @settings(max_examples=60, deadline=None)
    @given(
        n=st.integers(1, 12),
        rounds=st.integers(1, 5),
        seed=st.integers(0, 2**32),
        shuffle=st.booleans(),
    )
    def test_fair_over_a_multiple_of_n(self, n: int, rounds: int, seed: int, shuffle: bool) -> None:
        rng = random.Random(seed)
        instances = insts(*(f"i{k}" for k in range(n)))
        rr = RoundRobin(rng)
        counts: Counter[str | None] = Counter()
        for _ in range(rounds * n):
            if shuffle:
                rng.shuffle(instances)
            counts[ids_of([rr.pick(instances)])[0]] += 1
        assert set(counts.values()) == {rounds}

    @settings(max_examples=60, deadline=None)
    @given(
        changes=st.lists(st.tuples(st.integers(0, 30), st.sets(st.integers(0, 8), min_size=1)), max_size=6),
        seed=st.integers(0, 2**32),
    )
    def test_fair_between_membership_changes(self, changes: list[tuple[int, set[int]]], seed: int) -> None:
        """Within any stretch of an unchanged list, counts differ by at most 1."""
        rr = RoundRobin(random.Random(seed))
        for picks, members in changes:
            instances = insts(*(f"i{k}" for k in members))
            counts = Counter(ids_of([rr.pick(instances) for _ in range(picks)]))
            if picks >= len(members):
                assert max(counts.values()) - min(counts.values()) <= 1
                assert len(counts) == len(members)
            else:
                assert set(counts.values()) <= {1}


# -- random --------------------------------------------------------------------------------


class TestRandomChoice:
    def test_seeded_is_reproducible_and_order_independent(self) -> None:
        one = RandomChoice(random.Random(42))
        two = RandomChoice(random.Random(42))
        a = ids_of([one.pick(insts("a", "b", "c", "d")) for _ in range(50)])
        b = ids_of([two.pick(insts("d", "c", "b", "a")) for _ in range(50)])
        assert a == b

    def test_roughly_uniform(self) -> None:
        rnd = RandomChoice(random.Random(3))
        counts = Counter(ids_of([rnd.pick(insts("a", "b", "c", "d")) for _ in range(4000)]))
        assert set(counts) == {"a", "b", "c", "d"}
        assert all(850 < c < 1150 for c in counts.values())


# -- least connections ---------------------------------------------------------------------


class TestLeastConnections:
    def test_table(self) -> None:
        a, b, c = insts("a", "b", "c")
        lc = LeastConnections()
        assert lc.pick([a, b, c]) is a  # all idle: rotation from the start
        lc.on_acquire(a)
        assert ids_of([lc.pick([a, b, c])]) == ["b"]  # the only idle ones are b, c
        lc.on_acquire(b)
        assert ids_of([lc.pick([a, b, c])]) == ["c"]
        lc.on_acquire(c)
        assert ids_of([lc.pick([a, b, c])]) == ["a"]  # all at 1: next after c wraps to a
        lc.on_acquire(a)
        assert ids_of([lc.pick([a, b, c])]) == ["b"]  # b, c at 1: next after a
        lc.on_release(b)
        lc.on_release(b)  # an extra release must not go negative
        assert lc.in_flight(b) == 0
        assert ids_of([lc.pick([a, b, c])]) == ["b"]  # b is the only one at 0
        lc.on_acquire(b)
        assert ids_of([lc.pick([a, b, c])]) == ["c"]  # b, c at 1: next after b

    def test_prefers_the_least_loaded(self) -> None:
        a, b, c = insts("a", "b", "c")
        lc = LeastConnections(random.Random(1))
        for _ in range(5):
            lc.on_acquire(a)
        for _ in range(2):
            lc.on_acquire(b)
        lc.on_acquire(c)
        assert lc.pick([a, b, c]) is c
        assert lc.pick([a, b]) is b

    @settings(max_examples=50, deadline=None)
    @given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 4)), max_size=60))
    def test_always_picks_a_minimum(self, ops: list[tuple[bool, int]]) -> None:
        pool = insts("a", "b", "c", "d", "e")
        lc = LeastConnections()
        for acquire, k in ops:
            if acquire:
                chosen = lc.pick(pool)
                assert chosen is not None
                assert lc.in_flight(chosen) == min(lc.in_flight(i) for i in pool)
                lc.on_acquire(chosen)
            else:
                lc.on_release(pool[k])
            assert all(lc.in_flight(i) >= 0 for i in pool)


# -- consistent hashing with bounded loads -------------------------------------------------


def capacity(loads: dict[str, int], members: list[Instance], epsilon: float) -> int:
    total = sum(loads.get(i.id, 0) for i in members)
    factor = 1 + Fraction(epsilon).limit_denominator(1_000_000)
    return math.ceil(factor * (total + 1) / len(members))


class TestConsistentHash:
    def test_stable_hash_is_not_pythons_hash(self) -> None:
        digest = hashlib.blake2b(b"key", digest_size=8).digest()
        assert stable_hash("key") == int.from_bytes(digest, "big")
        assert stable_hash("a") != stable_hash("b")

    def test_same_key_same_instance_across_strategy_objects(self) -> None:
        pool = insts(*(f"n{k}" for k in range(5)))
        one, two = ConsistentHash(), ConsistentHash()
        for k in range(50):
            key = f"user-{k}"
            assert one.pick(pool, key) is two.pick(list(reversed(pool)), key)
            assert one.pick(pool, key) is one.owner(pool, key)

    def test_keys_spread_over_instances(self) -> None:
        pool = insts(*(f"n{k}" for k in range(4)))
        ring = ConsistentHash()
        counts = Counter(ids_of([ring.pick(pool, f"key-{k}") for k in range(4000)]))
        assert set(counts) == {i.id for i in pool}
        assert all(600 < c < 1400 for c in counts.values())

    @pytest.mark.parametrize(
        ("epsilon", "loads", "expected"),
        [
            (0.25, [0, 0, 0, 0], 1),  # ceil(1.25 * 1 / 4)
            (0.25, [1, 1, 1, 0], 2),  # ceil(1.25 * 4 / 4) = ceil(1.25)
            (0.25, [2, 2, 2, 2], 3),  # ceil(1.25 * 9 / 4) = ceil(2.8125)
            (0.25, [4, 4, 0, 0], 3),  # ceil(1.25 * 9 / 4)
            (1.0, [3, 0, 0, 0], 2),  # ceil(2 * 4 / 4)
            (0.25, [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1], 1),  # ceil(1.25 * 8 / 11)
        ],
    )
    def test_capacity_table(self, epsilon: float, loads: list[int], expected: int) -> None:
        pool = insts(*(f"n{k:02d}" for k in range(len(loads))))
        ring = ConsistentHash(epsilon=epsilon)
        for member, load in zip(pool, loads, strict=True):
            for _ in range(load):
                ring.on_acquire(member)
        assert (
            ring.capacity(pool)
            == expected
            == capacity({i.id: n for i, n in zip(pool, loads, strict=True)}, pool, epsilon)
        )

    def test_capacity_is_exact(self) -> None:
        # In floats ceil(1.1 * 50) is 56; the capacity must be 55.
        only = inst("a")
        ring = ConsistentHash(epsilon=0.1)
        for _ in range(49):
            ring.on_acquire(only)
        assert math.ceil(1.1 * 50) == 56
        assert ring.capacity([only]) == 55

    def test_full_owner_spills_clockwise(self) -> None:
        pool = insts("a", "b", "c", "d")
        ring = ConsistentHash(epsilon=0.25)
        key = "session-1"
        owner = ring.owner(pool, key)
        assert owner is not None and ring.pick(pool, key) is owner
        # Load the owner to the capacity: the key moves to the next instance on the ring.
        while ring.load(owner) < ring.capacity(pool):
            ring.on_acquire(owner)
        spilled = ring.pick(pool, key)
        assert spilled is not None and spilled is not owner
        expected = next(i for i in ring._walk(pool, key) if ring.load(i) < ring.capacity(pool))
        assert spilled is expected
        # Back below capacity: the key returns to its owner.
        ring.on_release(owner)
        assert ring.pick(pool, key) is owner

    def test_keyless_goes_to_the_least_loaded(self) -> None:
        a, b, c = insts("a", "b", "c")
        ring = ConsistentHash()
        ring.on_acquire(a)
        ring.on_acquire(c)
        assert ring.pick([a, b, c]) is b
        ring.on_acquire(b)
        assert ids_of([ring.pick([a, b, c]) for _ in range(3)]) == ["c", "a", "b"]

    @settings(max_examples=80, deadline=None)
    @given(
        ops=st.lists(
            st.one_of(
                st.tuples(st.just("acquire"), st.integers(0, 40)),
                st.tuples(st.just("release"), st.integers(0, 1000)),
                st.tuples(st.just("join"), st.integers(0, 11)),
                st.tuples(st.just("leave"), st.integers(0, 11)),
            ),
            max_size=120,
        ),
        epsilon=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
        vnodes=st.sampled_from([1, 8, 40]),
    )
    def test_bounded_load_never_exceeded(self, ops: list[tuple[str, int]], epsilon: float, vnodes: int) -> None:
        """Every call placed lands on an instance below capacity, and the walk
        starts at the owner: a key leaves its owner only when the owner is full."""
        everyone = insts(*(f"n{k:02d}" for k in range(12)))
        members = everyone[:4]
        ring = ConsistentHash(vnodes=vnodes, epsilon=epsilon)
        loads: Counter[str] = Counter()
        held: list[Instance] = []
        for op, arg in ops:
            if op == "acquire":
                key = f"k{arg}"
                cap = capacity(dict(loads), members, epsilon)
                chosen = ring.pick(members, key)
                assert chosen is not None and chosen in members
                assert loads[chosen.id] + 1 <= cap
                owner = ring.owner(members, key)
                assert owner is not None
                if loads[owner.id] < cap:
                    assert chosen is owner
                ring.on_acquire(chosen)
                loads[chosen.id] += 1
                held.append(chosen)
            elif op == "release" and held:
                gone = held.pop(arg % len(held))
                ring.on_release(gone)
                loads[gone.id] -= 1
            elif op == "join" and everyone[arg] not in members:
                members = [*members, everyone[arg]]
            elif op == "leave" and len(members) > 1 and everyone[arg] in members:
                members = [m for m in members if m is not everyone[arg]]
            for member in everyone:
                assert ring.load(member) == loads[member.id]

    @pytest.mark.parametrize("n", [3, 5, 10, 20])
    def test_about_one_nth_of_keys_move_on_a_membership_change(self, n: int) -> None:
        pool = insts(*(f"node-{k}" for k in range(n)))
        keys = [f"user-{k}" for k in range(5000)]
        ring = ConsistentHash()
        before = {key: ring.pick(pool, key) for key in keys}

        grown = [*pool, inst("node-new")]
        after_join = {key: ring.pick(grown, key) for key in keys}
        moved = [key for key in keys if after_join[key] is not before[key]]
        # Only keys that move to the newcomer move at all, and about 1/(n+1) of them.
        assert all(after_join[key] is grown[-1] for key in moved)
        assert 0.5 / (n + 1) < len(moved) / len(keys) < 1.6 / (n + 1)

        shrunk = pool[1:]
        after_leave = {key: ring.pick(shrunk, key) for key in keys}
        moved = [key for key in keys if after_leave[key] is not before[key]]
        # Exactly the keys of the instance that left move.
        assert set(moved) == {key for key in keys if before[key] is pool[0]}
        assert 0.5 / n < len(moved) / len(keys) < 1.6 / n

    @settings(max_examples=40, deadline=None)
    @given(
        n=st.integers(1, 8),
        newcomer=st.text("abcdef", min_size=1, max_size=4),
        keys=st.lists(st.text(min_size=0, max_size=8), min_size=1, max_size=40),
    )
    def test_join_and_leave_only_move_what_they_must(self, n: int, newcomer: str, keys: list[str]) -> None:
        pool = insts(*(f"node-{k}" for k in range(n)))
        ring = ConsistentHash(vnodes=20)
        before = {key: ring.pick(pool, key) for key in keys}
        grown = [*pool, inst(f"new-{newcomer}")]
        for key in keys:
            now = ring.pick(grown, key)
            assert now is before[key] or now is grown[-1]
        if n > 1:
            for key in keys:
                if before[key] is not pool[0]:
                    assert ring.pick(pool[1:], key) is before[key]


# -- sticky --------------------------------------------------------------------------------


class TestSticky:
    def test_sticks_until_the_instance_disappears(self) -> None:
        a, b, c = insts("a", "b", "c")
        sticky = Sticky(RoundRobin(random.Random(0)))
        first = sticky.pick([a, b, c])
        assert first is not None
        assert all(sticky.pick([a, b, c]) is first for _ in range(10))
        rest = [i for i in (a, b, c) if i is not first]
        second = sticky.pick(rest)
        assert second in rest
        # The first one coming back does not pull the client back.
        assert all(sticky.pick([a, b, c]) is second for _ in range(5))
        assert sticky.current == second.id

    def test_returns_the_current_version_of_the_instance(self) -> None:
        old, new = Instance("a", "h", 1, {"v": 1}), Instance("a", "h", 1, {"v": 2})
        sticky = Sticky()
        assert sticky.pick([old]) is old
        assert sticky.pick([new]) is new

    def test_no_instances_forgets_the_current_one(self) -> None:
        a, b = insts("a", "b")
        sticky = Sticky()
        sticky.pick([a])
        assert sticky.pick([]) is None
        assert sticky.current is None
        assert sticky.pick([b]) is b

    def test_forwards_hooks_to_the_inner_strategy(self) -> None:
        a, b = insts("a", "b")
        inner = LeastConnections()
        sticky = Sticky(inner)
        sticky.on_acquire(a)
        assert inner.in_flight(a) == 1
        sticky.on_release(a)
        assert inner.in_flight(a) == 0
        inner.on_acquire(a)
        assert sticky.pick([a, b]) is b  # the inner strategy chooses the first time


# -- the down-instance policy --------------------------------------------------------------


class TestDownInstancePolicy:
    def test_goes_down_after_threshold_then_comes_back(self) -> None:
        clock = FakeClock()
        policy = DownInstancePolicy(error_threshold=3, window=10.0, down_for=30.0, clock=clock)
        a = inst("a")
        policy.note_error(a)
        policy.note_error(a)
        assert not policy.is_down(a)
        policy.note_error(a)
        assert policy.is_down(a)
        clock.advance(29.9)
        assert policy.is_down(a)
        clock.advance(0.1)
        assert not policy.is_down(a)
        # Back with a clean slate: one more error does not take it down again.
        policy.note_error(a)
        assert not policy.is_down(a)

    def test_errors_outside_the_window_do_not_count(self) -> None:
        clock = FakeClock()
        policy = DownInstancePolicy(error_threshold=3, window=10.0, clock=clock)
        a = inst("a")
        for _ in range(5):
            policy.note_error(a)
            clock.advance(6.0)
        assert not policy.is_down(a)

    def test_a_success_clears_the_errors_but_not_a_down_period(self) -> None:
        clock = FakeClock()
        policy = DownInstancePolicy(error_threshold=2, clock=clock)
        a = inst("a")
        policy.note_error(a)
        policy.note_success(a)
        policy.note_error(a)
        assert not policy.is_down(a)
        policy.note_error(a)
        assert policy.is_down(a)
        policy.note_success(a)
        assert policy.is_down(a)

    def test_errors_while_down_do_not_extend_it(self) -> None:
        clock = FakeClock()
        policy = DownInstancePolicy(error_threshold=1, down_for=30.0, clock=clock)
        a = inst("a")
        policy.note_error(a)
        clock.advance(20)
        policy.note_error(a)
        clock.advance(10)
        assert not policy.is_down(a)

    def test_filter_and_fail_open(self) -> None:
        clock = FakeClock()
        policy = DownInstancePolicy(error_threshold=1, clock=clock)
        a, b = insts("a", "b")
        policy.note_error(a)
        assert policy.filter([a, b]) == [b]
        policy.note_error(b)
        assert policy.filter([a, b]) == [a, b]  # everything down: try them all
        assert policy.filter([]) == []

    def test_tracked_by_id(self) -> None:
        policy = DownInstancePolicy(error_threshold=1, clock=FakeClock())
        policy.note_error(Instance("a", "h", 1, {"v": 1}))
        assert policy.is_down(Instance("a", "h", 1, {"v": 2}))

    @pytest.mark.parametrize("kwargs", [{"error_threshold": 0}, {"window": 0.0}, {"down_for": -1.0}])
    def test_invalid_settings(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError):
            DownInstancePolicy(**kwargs)  # type: ignore[arg-type]


# -- the picker ----------------------------------------------------------------------------


class TestPicker:
    def test_acquire_release_tracks_calls(self) -> None:
        a, b = insts("a", "b")
        strategy = LeastConnections()
        picker = Picker(strategy, [a, b])
        first = picker.acquire()
        second = picker.acquire()
        assert {first, second} == {a, b}
        assert strategy.in_flight(a) == strategy.in_flight(b) == 1
        picker.release(a)
        assert picker.acquire() is a

    def test_leaves_out_down_instances_then_fails_open(self) -> None:
        clock = FakeClock()
        a, b, c = insts("a", "b", "c")
        policy = DownInstancePolicy(error_threshold=1, down_for=10.0, clock=clock)
        picker = Picker("round_robin", [a, b, c], down_policy=policy)
        picker.release(b, ok=False)
        assert b not in {picker.pick() for _ in range(6)}
        picker.release(a, ok=False)
        picker.release(c, ok=False)
        assert {picker.pick() for _ in range(6)} == {a, b, c}
        clock.advance(10.0)
        picker.release(a, ok=None)  # neither success nor error
        assert not policy.is_down(a)

    def test_sticky_moves_on_when_its_instance_goes_down(self) -> None:
        clock = FakeClock()
        a, b = insts("a", "b")
        policy = DownInstancePolicy(error_threshold=2, clock=clock)
        picker = Picker(make_strategy("sticky"), [a, b], down_policy=policy)
        first = picker.acquire()
        assert first is not None
        picker.release(first, ok=False)
        assert picker.pick() is first
        picker.release(first, ok=False)
        other = picker.pick()
        assert other is not None and other is not first

    def test_update_replaces_the_instances(self) -> None:
        picker = Picker("consistent_hash", insts("b", "a"))
        assert [i.id for i in picker.instances] == ["a", "b"]
        picker.update(insts("c"))
        assert picker.pick("any") == inst("c")
        picker.update([])
        assert picker.acquire("any") is None

    def test_bounded_loads_through_the_picker(self) -> None:
        pool = insts(*(f"n{k}" for k in range(4)))
        picker = Picker(ConsistentHash(epsilon=0.25), pool)
        held = [picker.acquire("hot-key") for _ in range(40)]
        counts = Counter(ids_of(held))
        assert max(counts.values()) <= math.ceil(1.25 * 40 / 4)
