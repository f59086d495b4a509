"""The runtime on real ZooKeeper: election, failover, fencing, resync after a lost watch."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zkop.api import parse_object
from zkop.client.connect import Connection
from zkop.coord.election import LeaderElection, read_leader
from zkop.platform.local.platform import LocalPlatform
from zkop.runtime.controller import Context, Controller
from zkop.runtime.manager import Manager, ManagerOptions
from zkop.runtime.result import Request, Result
from zkop.store import Store
from zkop.testing import Ensemble

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
SESSION_TIMEOUT = 2.0


def opconfig(name: str = "probe") -> object:
    return parse_object({"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": {"name": name}, "spec": {}})


async def test_exactly_one_leader_among_three(connection: Connection) -> None:
    clients = [connection.client() for _ in range(3)]
    for c in clients:
        await c.start()
    elections = [
        LeaderElection(c, root=connection.root, name="m", identity=f"r{i}", acl=connection.acl())
        for i, c in enumerate(clients)
    ]
    try:
        tasks = {asyncio.ensure_future(e.campaign()): e for e in elections}
        seen_leaders = []
        for _ in range(3):
            done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
            assert len(done) == 1, "two candidates won at once"
            winner = tasks.pop(done.pop())
            assert sum(e.leading for e in elections) == 1
            info = await read_leader(clients[0], f"{connection.root}/leader/m")
            assert info.identity == winner.identity
            seen_leaders.append((winner.identity, winner.term.epoch if winner.term else None))
            await winner.resign()
        epochs = [e for _, e in seen_leaders]
        assert epochs == sorted(epochs) and len(set(epochs)) == 3, "each term has a newer epoch"
    finally:
        for c in clients:
            await c.stop()


class Replicas:
    """Operator replica processes started by a test; all stopped by pid at the end."""

    def __init__(self, ensemble: Ensemble, tmp: Path) -> None:
        self.hosts = ensemble.connection_string
        self.creds = "zkop:fencing-test"
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.action_seconds = 0.0  # how long each probe action holds the platform's fence lock

    def start(self, identity: str) -> None:
        log = (self.tmp / f"{identity}.log").open("ab")
        self.procs[identity] = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "helpers" / "probe_replica.py"),
                self.hosts,
                self.creds,
                str(self.tmp),
                identity,
                str(SESSION_TIMEOUT),
                str(self.action_seconds),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src")),
        )

    def connection(self) -> Connection:
        user, password = self.creds.split(":")
        return Connection(self.hosts, user, password)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def replicas(zk_single: Ensemble, tmp_path: Path) -> Iterator[Replicas]:
    r = Replicas(zk_single, tmp_path)
    try:
        yield r
    finally:
        r.stop_all()


async def wait_leader(conn: Connection, not_identity: str | None = None, timeout: float = 20.0) -> tuple[str, int]:
    client = conn.client()
    await client.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await read_leader(client, f"{conn.root}/leader/probe")
            if info.identity and info.identity != not_identity and info.epoch is not None:
                return info.identity, info.epoch
            await asyncio.sleep(0.02)
        raise AssertionError("no leader")
    finally:
        await client.stop()


async def setup_probe(replicas: Replicas, count: int) -> Store:
    conn = replicas.connection()
    client = conn.client()
    await client.start()
    store = Store(client, root=conn.root, acl=conn.acl())
    await store.create(opconfig())  # type: ignore[arg-type]
    for i in range(count):
        replicas.start(f"r{i}")
    return store


def actions(tmp: Path) -> list[tuple[int, str]]:
    path = tmp / "actions.log"
    if not path.exists():
        return []
    return [(int(e), who) for e, who in (line.split() for line in path.read_text().splitlines() if line)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_failover(replicas: Replicas, sig: signal.Signals) -> None:
    store = await setup_probe(replicas, 2)
    try:
        leader, epoch = await wait_leader(replicas.connection())
        killed = time.monotonic()
        os.kill(replicas.procs[leader].pid, sig)
        new, new_epoch = await wait_leader(replicas.connection(), not_identity=leader)
        took = time.monotonic() - killed
        assert new != leader and new_epoch > epoch
        bound = 1.0 if sig == signal.SIGTERM else SESSION_TIMEOUT + 1.0
        assert took < bound, f"failover after {sig.name} took {took:.2f}s (bound {bound}s)"
    finally:
        await store.client.stop()


def fence_lock(tmp: Path) -> Path:
    return tmp / "fence" / "probe.lock"  # the probe replicas' LocalPlatform(tmp, "probe")


def try_lock(path: Path) -> int | None:
    """The fence lock taken without waiting (an fd to unlock), or None while a replica holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


async def pause_between_actions(proc: subprocess.Popen[bytes], tmp: Path) -> None:
    """SIGSTOP a replica while it holds no action's fence lock: taking the lock first makes sure."""
    async with asyncio.timeout(10):
        while (fd := try_lock(fence_lock(tmp))) is None:  # noqa: ASYNC110 (another process's lock)
            await asyncio.sleep(0.01)
    try:
        os.kill(proc.pid, signal.SIGSTOP)
    finally:
        unlock(fd)


async def pause_inside_action(proc: subprocess.Popen[bytes], tmp: Path) -> None:
    """SIGSTOP a replica while it holds an action's fence lock (only the leader acts)."""
    async with asyncio.timeout(20):
        while True:
            while (fd := try_lock(fence_lock(tmp))) is not None:
                unlock(fd)
                await asyncio.sleep(0.01)
            os.kill(proc.pid, signal.SIGSTOP)
            fd = try_lock(fence_lock(tmp))
            if fd is None:
                return  # paused with the lock held
            unlock(fd)  # it let go just before the signal: again
            os.kill(proc.pid, signal.SIGCONT)


async def test_fencing_a_paused_leader_changes_nothing(replicas: Replicas, tmp_path: Path) -> None:
    store = await setup_probe(replicas, 2)
    rounds = 0
    try:
        for _ in range(3):
            leader, epoch = await wait_leader(replicas.connection())
            # Leading in ZooKeeper is not yet leading in the process (it may be between opening
            # its term and starting its controllers): pause it only once it has acted.
            await poll_until(lambda ep=epoch, who=leader: (ep, who) in actions(tmp_path), timeout=10)
            proc = replicas.procs[leader]
            await pause_between_actions(proc, tmp_path)
            new, new_epoch = await wait_leader(replicas.connection(), not_identity=leader, timeout=SESSION_TIMEOUT * 6)
            # Let the new leader act before the old one wakes up.
            await poll_until(lambda ep=new_epoch: any(e == ep for e, _ in actions(tmp_path)), timeout=10)
            obj = await store.get("OperatorConfig", "default", "probe")
            assert obj.status.epoch == new_epoch  # type: ignore[attr-defined]
            before = len(actions(tmp_path))
            old_log = tmp_path / f"{leader}.log"
            step_downs = old_log.read_text().count("stopped leading")
            os.kill(proc.pid, signal.SIGCONT)
            # It resumes with stale beliefs and a live reconcile loop; wait until it steps down.
            await poll_until(lambda n=step_downs, f=old_log: f.read_text().count("stopped leading") > n, timeout=15)
            after = actions(tmp_path)
            late = [(e, who) for e, who in after[before:] if who == leader]
            assert not late, f"the deposed leader acted after resuming: {late}"
            epochs = [e for e, _ in after]
            assert epochs == sorted(epochs), "platform actions never go back to an older epoch"
            obj = await store.get("OperatorConfig", "default", "probe")
            assert obj.status.leader == new and obj.status.epoch == new_epoch  # type: ignore[attr-defined]
            info_leader, _ = await wait_leader(replicas.connection())
            assert info_leader == new
            rounds += 1
        print(f"fencing rounds passed: {rounds}")
    finally:
        await store.client.stop()


async def test_a_leader_paused_inside_an_action_delays_the_next_term_and_then_yields(
    replicas: Replicas, tmp_path: Path
) -> None:
    """The fence lock is held for one whole action: a replica paused inside one keeps the new
    leader waiting (reported in its log) until it resumes; the action it was admitted to ends,
    nothing of its epoch follows, and the new leader acts."""
    replicas.action_seconds = 0.3
    store = await setup_probe(replicas, 2)
    try:
        leader, epoch = await wait_leader(replicas.connection())
        await poll_until(lambda: (epoch, leader) in actions(tmp_path), timeout=10)
        proc = replicas.procs[leader]
        await pause_inside_action(proc, tmp_path)
        new, new_epoch = await wait_leader(replicas.connection(), not_identity=leader, timeout=SESSION_TIMEOUT * 6)
        new_log = tmp_path / f"{new}.log"
        await poll_until(lambda: f"to admit epoch {new_epoch}" in new_log.read_text(), timeout=10)
        assert not any(e == new_epoch for e, _ in actions(tmp_path)), "acted while the fence was held"
        before = len(actions(tmp_path))
        os.kill(proc.pid, signal.SIGCONT)
        await poll_until(lambda: any(e == new_epoch for e, _ in actions(tmp_path)), timeout=15)
        await poll_until(lambda: "stopped leading" in (tmp_path / f"{leader}.log").read_text(), timeout=15)
        after = actions(tmp_path)
        # At most the action it was paused in (admitted before the new term) ends after it resumes.
        late = [(e, who) for e, who in after[before:] if who == leader]
        assert len(late) <= 1 and all(e < new_epoch for e, _ in late), f"the deposed leader acted: {late}"
        epochs = [e for e, _ in after]
        assert epochs == sorted(epochs), "platform actions never go back to an older epoch"
        assert (await wait_leader(replicas.connection()))[0] == new
    finally:
        await store.client.stop()


async def poll_until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll a condition that no event announces (a file another process appends to)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []
        self.changed = asyncio.Event()

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        obj = await ctx.store.get("OperatorConfig", request.namespace, request.name)
        self.seen.append((request.key, obj.metadata.generation))
        self.changed.set()
        return Result()


async def test_lost_watch_is_healed_by_resync(connection: Connection, store: Store) -> None:
    recorder = Recorder()
    manager = Manager(
        connection,
        ManagerOptions(name="lw", leader_elect=False, metrics_port=None),
        controllers=[Controller("lw", "OperatorConfig", recorder, relist_period=1.0, resync_period=60)],
    )
    task = asyncio.create_task(manager.run())
    try:
        obj = await store.create(opconfig("watched"))  # type: ignore[arg-type]
        async with asyncio.timeout(10):
            while ("default/watched", 1) not in recorder.seen:
                recorder.changed.clear()
                await recorder.changed.wait()
        # Drop every watch the manager's session holds: ZooKeeper will notify nobody.
        assert manager.client is not None
        manager.client.kazoo._data_watchers.clear()
        manager.client.kazoo._child_watchers.clear()
        spec = obj.spec.model_copy(update={"replicas": 3})  # type: ignore[attr-defined]
        await store.update(obj.model_copy(update={"spec": spec}))
        async with asyncio.timeout(10):
            while ("default/watched", 2) not in recorder.seen:
                recorder.changed.clear()
                await recorder.changed.wait()
    finally:
        manager.stop()
        await task


class Failing:
    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()

    async def reconcile(self, request: Request, ctx: Context) -> Result:
        self.calls += 1
        self.called.set()
        raise RuntimeError("boom")


async def test_reconcile_error_backs_off_and_is_reported(connection: Connection, store: Store) -> None:
    failing = Failing()
    manager = Manager(
        connection,
        ManagerOptions(name="err", leader_elect=False, metrics_port=0),
        controllers=[Controller("err", "OperatorConfig", failing, resync_period=60)],
    )
    task = asyncio.create_task(manager.run())
    try:
        await store.create(opconfig("broken"))  # type: ignore[arg-type]
        async with asyncio.timeout(15):
            while True:
                obj = await store.get("OperatorConfig", "default", "broken")
                conds = {c.type: c for c in obj.status.conditions}  # type: ignore[attr-defined]
                if "ReconcileError" in conds:
                    break
                failing.called.clear()
                await failing.called.wait()
        cond = conds["ReconcileError"]
        assert cond.status == "True" and "boom" in (cond.message or "")
        events = await store.list_events("default", kind="OperatorConfig", name="broken")
        assert any(e.reason == "ReconcileError" and e.type == "Warning" for e in events)
        # It keeps being retried (the per-key backoff itself is tested in test_workqueue).
        async with asyncio.timeout(15):
            while failing.calls < 5:
                failing.called.clear()
                await failing.called.wait()
        # Metrics and health endpoints.
        assert manager.health is not None
        port = manager.health.port
        metrics = await http_get(port, "/metrics")
        assert "zkop_reconcile_errors_total" in metrics and 'controller="err"' in metrics
        assert "zkop_workqueue_retries_total" in metrics
        assert (await http_get(port, "/healthz")).startswith("HTTP/1.1 200")
        assert (await http_get(port, "/readyz")).startswith("HTTP/1.1 200")
        assert (await http_get(port, "/nope")).startswith("HTTP/1.1 404")
    finally:
        manager.stop()
        await task


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data.decode()


async def test_controllers_restart_after_leadership_blip(connection: Connection, store: Store) -> None:
    recorder = Recorder()
    manager = Manager(
        connection,
        ManagerOptions(name="blip", session_timeout=6.0, metrics_port=None),
        controllers=[Controller("blip", "OperatorConfig", recorder, resync_period=60)],
    )
    task = asyncio.create_task(manager.run())
    try:
        obj = await store.create(opconfig("blip"))  # type: ignore[arg-type]
        async with asyncio.timeout(15):
            while ("default/blip", 1) not in recorder.seen:
                recorder.changed.clear()
                await recorder.changed.wait()
        # What a SUSPENDED blip or a lapsed lease does: the controllers are cancelled mid-term.
        manager._stop_controllers()
        spec = obj.spec.model_copy(update={"replicas": 3})  # type: ignore[attr-defined]
        await store.update(obj.model_copy(update={"spec": spec}))
        async with asyncio.timeout(15):
            while ("default/blip", 2) not in recorder.seen:
                recorder.changed.clear()
                await recorder.changed.wait()
        assert manager.leading
    finally:
        manager.stop()
        await task


async def test_a_term_refused_by_the_platform_steps_down_and_campaigns_again(
    connection: Connection, store: Store, tmp_path: Path
) -> None:
    """A replica that wins but finds a newer epoch already recorded by the platform (it was
    paused between winning and leading) must not crash: it steps down and campaigns again."""
    platform = LocalPlatform(tmp_path / "state", "zkop-operator")
    newer = 3
    platform.claim(newer)  # as if a later term had acted already
    recorder = Recorder()
    manager = Manager(
        connection,
        ManagerOptions(name="refused", session_timeout=6.0, metrics_port=None),
        controllers=[Controller("refused", "OperatorConfig", recorder, resync_period=60)],
        platforms=[platform],
    )
    task = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(20):
            while manager.epoch is None:
                assert not task.done(), "the manager must not stop on a refused term"
                await asyncio.sleep(0.05)
        assert manager.epoch >= newer and manager.leading
        rejected = manager.metrics.fencing_rejections.labels(manager.identity)._value.get()
        assert rejected >= 1, "the older terms were refused"
    finally:
        manager.stop()
        await task
