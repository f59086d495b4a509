"""Failover after SIGKILL and SIGTERM of the leader: zkop's Manager next to kazoo's Election.

    python bench/failover.py [--trials 5] [--session-timeout 2]

Two replicas per trial against one real ZooKeeper; the time runs from the signal to the
moment ZooKeeper shows the other replica leading (zkop: first in line and holder of the
newest epoch; kazoo: first contender). Writes bench/results/failover.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ratio, summary, write
from zkop.client.bridge import ZkClient
from zkop.client.connect import Connection
from zkop.coord.election import read_leader
from zkop.testing import running_ensemble

HERE = Path(__file__).resolve().parent
CREDS = "zkop:bench-failover"


def spawn(mode: str, hosts: str, identity: str, timeout: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "replica.py"), mode, hosts, CREDS, identity, str(timeout)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def leader_of(client: ZkClient, mode: str) -> str | None:
    if mode == "zkop":
        info = await read_leader(client, "/zkop/leader/bench")
        return info.identity
    try:
        children = sorted(await client.get_children("/bench-kazoo-election"), key=lambda c: c.rsplit("__", 1)[-1])
    except Exception:
        return None
    for child in children:
        try:
            raw, _ = await client.get(f"/bench-kazoo-election/{child}")
            return raw.decode()
        except Exception:
            continue
    return None


async def wait_for(client: ZkClient, mode: str, predicate: object, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        who = await leader_of(client, mode)
        if who is not None and predicate(who):  # type: ignore[operator]
            return who
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{mode}: no leader change within {timeout}s")


async def wait_in_line(client: ZkClient, mode: str, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` candidates are registered (the standby is in line)."""
    path = "/zkop/leader/bench/candidates" if mode == "zkop" else "/bench-kazoo-election"
    deadline = time.monotonic() + timeout
    while len(await client.get_children(path)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("the standby did not get in line")
        await asyncio.sleep(0.01)


async def trial(client: ZkClient, hosts: str, mode: str, sig: signal.Signals, n: int, timeout: float) -> float:
    a, b = f"{mode}-{n}-a", f"{mode}-{n}-b"
    procs = {a: spawn(mode, hosts, a, timeout)}
    try:
        await wait_for(client, mode, lambda who: who == a)
        procs[b] = spawn(mode, hosts, b, timeout)
        await wait_in_line(client, mode, 2)
        started = time.monotonic()
        os.kill(procs[a].pid, sig)
        await wait_for(client, mode, lambda who: who == b)
        return time.monotonic() - started
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()


async def main(trials: int, timeout: float) -> None:
    with running_ensemble(1) as zk:
        user, password = CREDS.split(":")
        conn = Connection(zk.connection_string, user, password)
        client = conn.client()
        await client.start()
        results: dict[str, dict[str, list[float]]] = {}
        try:
            for sig in (signal.SIGKILL, signal.SIGTERM):
                for mode in ("kazoo", "zkop"):
                    samples = [await trial(client, zk.connection_string, mode, sig, n, timeout) for n in range(trials)]
                    results.setdefault(sig.name, {})[mode] = samples
        finally:
            await client.stop()
    out: dict[str, object] = {"session_timeout_s": timeout, "trials": trials}
    for sig_name, by_mode in results.items():
        zkop_s, kazoo_s = summary(by_mode["zkop"]), summary(by_mode["kazoo"])
        out[sig_name] = {
            "zkop_s": zkop_s,
            "kazoo_election_s": kazoo_s,
            "ratio_p50_zkop_over_kazoo": ratio(zkop_s["p50"], kazoo_s["p50"]),
        }
    out["notes"] = (
        "kazoo's Election releases nothing on SIGTERM (the process dies with its session), so its standby "
        "waits for the session to expire; zkop's manager resigns on SIGTERM. After SIGKILL both wait for "
        "ZooKeeper to expire the session."
    )
    write("failover", json.loads(json.dumps(out)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.session_timeout))
