"""Ensemble start and heal times, next to one bare ZooKeeper JVM started in the same run.

    python bench/ensemble.py [--reps 3]

Writes bench/results/ensemble.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ratio, summary, write
from zkop.platform.local import ports
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.zk import fourlw
from zkop.zk.config import ServerSettings, jvm_args
from zkop.zk.distribution import locate


async def wait_imok_serving(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await fourlw.server_state("127.0.0.1", port, timeout=0.5)
        if state.serving:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("bare ZooKeeper did not serve")


async def bare_jvm_start() -> float:
    """One standalone server, same JVM flags and class path, no zkop in the way."""
    dist = locate()
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-bare-"))
    (port,) = ports.allocate(1)
    cfg = root / "zoo.cfg"
    cfg.write_text(
        f"tickTime=2000\ndataDir={root / 'data'}\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,mntr\n"
    )
    argv = [
        dist.java,
        *jvm_args(ServerSettings()),
        "-Dzookeeper.admin.enableServer=false",
        "-cp",
        dist.classpath_str(),
        "org.apache.zookeeper.server.ZooKeeperServerMain",
        str(cfg),
    ]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_imok_serving(port)
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


async def ensemble_up(members: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-up-"))
    ensemble = LocalEnsemble(root, "bench")
    try:
        started = time.monotonic()
        ensemble.create(members, settings=ServerSettings(tick_time=1000))
        ensemble.start()
        await ensemble.wait_serving(timeout=120)
        return time.monotonic() - started
    finally:
        ensemble.stop(grace=5)
        shutil.rmtree(root, ignore_errors=True)


async def heal_times(reps: int) -> dict[str, list[float]]:
    """Kill -9 a follower (then the leader), restart it, time until it serves again."""
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-heal-"))
    ensemble = LocalEnsemble(root, "bench")
    out: dict[str, list[float]] = {"follower": [], "leader": []}
    try:
        ensemble.create(3, settings=ServerSettings(tick_time=1000))
        ensemble.start()
        await ensemble.wait_serving(timeout=120)
        for _ in range(reps):
            for which in ("follower", "leader"):
                statuses = await ensemble.wait_quorum(timeout=60)
                await ensemble.wait_serving(timeout=60)
                target = next(s.id for s in statuses if s.serving and (s.state.mode == "leader") == (which == "leader"))
                ensemble.kill_member(target)
                started = time.monotonic()
                ensemble.start_member(target)
                await ensemble.wait_serving([target], timeout=120)
                out[which].append(time.monotonic() - started)
    finally:
        ensemble.stop(grace=5)
        shutil.rmtree(root, ignore_errors=True)
    return out


async def main(reps: int) -> None:
    bare = [await bare_jvm_start() for _ in range(reps)]
    up3 = [await ensemble_up(3) for _ in range(reps)]
    up5 = [await ensemble_up(5) for _ in range(reps)]
    heal = await heal_times(reps)
    bare_med = statistics.median(bare)
    write(
        "ensemble",
        {
            "baseline": {"bare_jvm_start_s": summary(bare)},
            "up_to_quorum_3_s": summary(up3),
            "up_to_quorum_5_s": summary(up5),
            "heal_follower_s": summary(heal["follower"]),
            "heal_leader_s": summary(heal["leader"]),
            "ratios_vs_bare_jvm": {
                "up_3": ratio(statistics.median(up3), bare_med),
                "up_5": ratio(statistics.median(up5), bare_med),
                "heal_follower": ratio(statistics.median(heal["follower"]), bare_med),
                "heal_leader": ratio(statistics.median(heal["leader"]), bare_med),
            },
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    asyncio.run(main(parser.parse_args().reps))
