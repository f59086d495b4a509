"""Failover after SIGKILL and SIGTERM of the leader: zkop's Manager next to kazoo's Election.

    python bench/failover.py [--trials 5] [--session-timeout 2]

Each trial starts two replica processes (bench/replica.py) against one real ZooKeeper
started here, waits until one leads, has made its first write as leader and the other
stands in line, then signals the leader. Two times are taken from the signal:

- ``to_leader``: ZooKeeper shows the standby leading. zkop: ``read_leader`` names it
  (first candidate and holder of the newest epoch). kazoo: it is the first of
  ``election.contenders()``.
- ``to_first_write``: the new leader's first write as leader is visible. zkop: the
  OperatorConfig reconciler's fenced status write (``status.leader``/``status.epoch`` of
  the new term). kazoo: the znode the election function writes on winning (unfenced).

Observation is watch-driven (re-checked on every change, 100 ms fallback poll). Modes run
interleaved trial by trial. ``kazoo`` keeps Python's default SIGTERM action, as a kazoo
program without a handler does; ``kazoo-graceful`` closes its session on SIGTERM.
Writes bench/results/failover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import WatchedEvent

from common import ratio, summary, write
from replica import KAZOO_ELECTION, KAZOO_LEADER_WRITE, MANAGER_NAME
from zkop.api import parse_object, resolve_kind
from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.coord.election import read_leader
from zkop.store import Store
from zkop.testing import running_ensemble

HERE = Path(__file__).resolve().parent
CREDS = "zkop:bench-failover"
LEADER_BASE = f"/zkop/leader/{MANAGER_NAME}"
MODES = {signal.SIGKILL: ("kazoo", "zkop"), signal.SIGTERM: ("kazoo", "kazoo-graceful", "zkop")}
T = TypeVar("T")


class Observer:
    """Re-evaluates a condition whenever one of the watched znodes changes."""

    def __init__(self, client: ZkClient) -> None:
        self.client = client
        self.changed = asyncio.Event()
        self._hops: dict[str, Any] = {}
        self.election = client.kazoo.Election(KAZOO_ELECTION)

    def _hop(self, path: str) -> Any:
        if path not in self._hops:

            def fire(_event: WatchedEvent) -> None:
                self.changed.set()

            self._hops[path] = self.client.hop(fire)
        return self._hops[path]

    async def _arm(self, children: list[str], data: list[str]) -> None:
        for path in children:
            try:
                await self.client.get_children(path, watch=self._hop("c:" + path))
            except NoNodeError:
                await self.client.exists(path, watch=self._hop("d:" + path))
        for path in data:
            await self.client.exists(path, watch=self._hop("d:" + path))

    async def until(
        self,
        check: Callable[[], Awaitable[T | None]],
        *,
        children: Sequence[str] = (),
        data: Sequence[str] = (),
        timeout: float = 30.0,
        what: str = "condition",
    ) -> tuple[T, float]:
        """Wait until ``check()`` returns a value (not None); returns it and when it was seen."""
        deadline = time.monotonic() + timeout
        while True:
            self.changed.clear()
            await self._arm(list(children), list(data))
            value = await check()
            seen = time.monotonic()
            if value is not None:
                return value, seen
            if seen > deadline:
                raise TimeoutError(f"{what}: not within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.1)

    # ---- what to look at, per mode -------------------------------------------------

    async def line(self, mode: str) -> tuple[str | None, list[str], int | None]:
        """(the leader if one leads, the candidates in order, the epoch for zkop)."""
        if mode == "zkop":
            info = await read_leader(self.client, LEADER_BASE)
            return info.identity, info.candidates, info.epoch
        try:
            contenders = list(await asyncio.to_thread(self.election.contenders))
        except NoNodeError:
            contenders = []
        return (contenders[0] if contenders else None), contenders, None

    def line_paths(self, mode: str) -> dict[str, list[str]]:
        if mode == "zkop":
            return {"children": [f"{LEADER_BASE}/candidates"], "data": [f"{LEADER_BASE}/epoch"]}
        return {"children": [KAZOO_ELECTION]}

    async def last_write(self, mode: str, status_path: str) -> tuple[str, int | None]:
        """Who made the newest leader write (and in which epoch, for zkop)."""
        try:
            if mode == "zkop":
                raw, _ = await self.client.get(status_path)
                status = json.loads(raw or b"{}")
                return str(status.get("leader")), status.get("epoch")
            raw, _ = await self.client.get(KAZOO_LEADER_WRITE)
            return raw.decode(), None
        except NoNodeError:
            return "", None

    def write_path(self, mode: str, status_path: str) -> str:
        return status_path if mode == "zkop" else KAZOO_LEADER_WRITE


def spawn(mode: str, hosts: str, identity: str, timeout: float, logdir: Path) -> subprocess.Popen[bytes]:
    log = (logdir / f"{identity}.log").open("wb")
    with log:
        return subprocess.Popen(
            [sys.executable, str(HERE / "replica.py"), mode, hosts, CREDS, identity, str(timeout)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Graceful stop (SIGINT closes the session in every mode), then SIGKILL by pid."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def trial(
    obs: Observer, hosts: str, mode: str, sig: signal.Signals, n: int, timeout: float, logdir: Path, status_path: str
) -> tuple[float, float]:
    ids = [f"{mode}-{sig.name}-{n}-a", f"{mode}-{sig.name}-{n}-b"]
    procs = {i: spawn(mode, hosts, i, timeout, logdir) for i in ids}
    paths = obs.line_paths(mode)
    try:

        async def ready() -> tuple[str, int | None] | None:
            leader, line, epoch = await obs.line(mode)
            if leader is not None and sorted(line) == sorted(ids):
                return leader, epoch
            return None

        (leader, epoch), _ = await obs.until(ready, timeout=60, what=f"{mode}: leader and standby in line", **paths)

        async def wrote(who: str, newer_than: int | None) -> bool | None:
            writer, written_epoch = await obs.last_write(mode, status_path)
            if writer != who:
                return None
            if newer_than is not None and (written_epoch is None or written_epoch <= newer_than):
                return None
            return True

        await obs.until(
            lambda: wrote(leader, None), data=[obs.write_path(mode, status_path)], what=f"{mode}: first leader write"
        )
        standby = next(i for i in ids if i != leader)
        started = time.monotonic()
        os.kill(procs[leader].pid, sig)

        async def standby_leads() -> bool | None:
            leader, _, _ = await obs.line(mode)
            return True if leader == standby else None

        _, led = await obs.until(standby_leads, timeout=timeout * 5 + 10, what=f"{mode}: failover", **paths)
        _, wrote_at = await obs.until(
            lambda: wrote(standby, epoch),
            data=[obs.write_path(mode, status_path)],
            timeout=timeout * 5 + 10,
            what=f"{mode}: new leader's first write",
        )
        return led - started, wrote_at - started
    except BaseException:
        for identity in ids:
            tail = (logdir / f"{identity}.log").read_text(errors="replace")[-2000:]
            sys.stderr.write(f"--- {identity}.log (tail)\n{tail}\n")
        raise
    finally:
        stop(procs)

        async def empty() -> bool | None:
            _, line, _ = await obs.line(mode)
            return None if line else True

        # A killed replica's candidate lasts until its session expires; start the next trial clean.
        with contextlib.suppress(TimeoutError):
            await obs.until(empty, timeout=timeout * 5, what="candidates gone", **paths)


async def cancel_on_sigterm(coro: Coroutine[Any, Any, None]) -> None:
    """SIGTERM cancels the run, so every finally (processes, sessions, ZooKeeper) still runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await coro


def rounded(samples: list[float]) -> dict[str, float]:
    s = summary(samples)
    return {"n": s["n"], "p50": round(s["p50"], 4), "max": round(s["max"], 4), "min": round(s["min"], 4)}


async def main(trials: int, timeout: float) -> None:
    started = time.monotonic()
    user, password = CREDS.split(":")
    with running_ensemble(1) as zk, tempfile.TemporaryDirectory(prefix="zkop-bench-failover-") as tmp:
        hosts = zk.connection_string
        conn = Connection(hosts, user, password)
        client = conn.client()
        await client.start()
        try:
            store = Store(client, root=conn.root, acl=conn.acl())
            probe = parse_object(
                {"apiVersion": "zkop.io/v1", "kind": "OperatorConfig", "metadata": {"name": "probe"}, "spec": {}}
            )
            await store.create(probe)
            status_path = store.obj_path(resolve_kind("OperatorConfig"), "default", "probe") + "/status"
            await client.ensure_path(KAZOO_ELECTION)
            obs = Observer(client)
            samples: dict[str, dict[str, dict[str, list[float]]]] = {}
            for sig, modes in MODES.items():
                by_mode = samples.setdefault(sig.name, {m: {"to_leader": [], "to_first_write": []} for m in modes})
                for n in range(trials):
                    for mode in modes:  # interleaved, so drift hits every mode alike
                        led, wrote = await trial(obs, hosts, mode, sig, n, timeout, Path(tmp), status_path)
                        by_mode[mode]["to_leader"].append(led)
                        by_mode[mode]["to_first_write"].append(wrote)
        finally:
            await client.stop()
    out: dict[str, Any] = {
        "session_timeout_s": timeout,
        "zookeeper": "1 member, tickTime 500 ms (session timeouts 1-10 s honoured)",
        "trials": trials,
        "seconds_total": round(time.monotonic() - started, 1),
    }
    for sig_name, by_mode in samples.items():
        section: dict[str, Any] = {}
        for mode, times in by_mode.items():
            section[mode] = {k: rounded(v) for k, v in times.items()}
        zk_ = section["zkop"]
        for base in (m for m in by_mode if m != "zkop"):
            section[f"ratio_zkop_over_{base.replace('-', '_')}"] = {
                f"{what}_{stat}": ratio(zk_[what][stat], section[base][what][stat])
                for what in ("to_leader", "to_first_write")
                for stat in ("p50", "max")
            }
        out[sig_name] = section
    out["notes"] = (
        "After SIGKILL every standby waits for ZooKeeper to expire the dead leader's session. "
        "On SIGTERM zkop's manager stops its controllers and deletes its candidate (resigns); "
        "a kazoo program without a SIGTERM handler dies with its session open, so its standby "
        "also waits for expiry; kazoo-graceful closes its session in a handler. zkop's first "
        "write is fenced (a multi-op checking the epoch) and comes from a controller that "
        "first lists its kind; kazoo's is a plain set from the election function."
    )
    write("failover", out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(cancel_on_sigterm(main(args.trials, args.session_timeout)))
