"""The control plane heals itself: kill -9 of a member of ``zkop up -d``'s ensemble, until the
keeper has restarted it and the whole ensemble serves again, next to one bare ZooKeeper JVM
start measured in the same run.

    python bench/controlplane.py [--reps 3]

A control plane of 3 members is started with ``zkop up -d`` in a state directory of its own.
Each rep kills the next member (1, 2, 3, 1, ...) with SIGKILL, only once every member serves,
and times from the signal:

- ``to_restarted``: the member runs again under a new pid (the keeper's restart);
- ``to_serving``: all three members answer ``srvr`` as leader or follower again.

Ends everything it started (``zkop down``; by pid if that fails). Writes
bench/results/controlplane.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ratio, summary, write
from ensemble import bare_jvm_start
from zkop.cli.local import stop_everything
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble

MEMBERS = 3


def zkop(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, ZKOP_STATE_DIR=str(state)),
        timeout=300,
        check=False,
    )


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> float:
    """Poll ``check`` (each poll is a few loopback round trips) until true; the time it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def one_kill(ensemble: LocalEnsemble, member_id: int) -> dict[str, float]:
    async def all_serving() -> bool:
        members = await ensemble.observe(timeout=0.5)
        return len(members) == MEMBERS and all(m.serving for m in members)

    await until("all members serving before the kill", all_serving)
    record = ensemble.unit(member_id).running()
    assert record is not None, f"member {member_id} is not running"
    old_pid = record.pid

    async def restarted() -> bool:
        now = ensemble.unit(member_id).running()
        return now is not None and now.pid != old_pid

    killed = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    await until(f"member {member_id} restarted", restarted)
    to_restarted = time.monotonic() - killed
    await until("all members serving after the kill", all_serving)
    return {"to_restarted": to_restarted, "to_serving": time.monotonic() - killed}


async def run(reps: int) -> dict[str, Any]:
    bare = [await bare_jvm_start() for _ in range(reps)]
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="zkop-bench-controlplane-") as tmp:
        state = Path(tmp)
        up = zkop(state, "up", "-d")
        try:
            if up.returncode != 0:
                raise SystemExit(f"zkop up -d failed:\n{up.stdout}{up.stderr}")
            ensemble = LocalEnsemble(state, statedir.CONTROL_PLANE)
            for rep in range(reps):
                samples.append(await one_kill(ensemble, rep % MEMBERS + 1))
        finally:
            if zkop(state, "down").returncode != 0:
                stop_everything(state, grace=5)
    restarted = [s["to_restarted"] for s in samples]
    serving = [s["to_serving"] for s in samples]
    jvm = summary(bare)["median"]
    return {
        "reps": reps,
        "members": MEMBERS,
        "baseline": {"bare_jvm_start_s": summary(bare)},
        "kill_to_restarted_s": summary(restarted),
        "kill_to_all_serving_s": summary(serving),
        "ratios": {
            "to_restarted_vs_bare_jvm": ratio(summary(restarted)["median"], jvm),
            "to_all_serving_vs_bare_jvm": ratio(summary(serving)["median"], jvm),
        },
        "note": "the keeper (zkop up -d) restarts a member it sees exit (pidfd); a member that comes back "
        "rejoins the quorum (election, then sync with the leader) before it serves",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    write("controlplane", asyncio.run(run(args.reps)))
