"""Run every benchmark in bench/ one after another (they share 2 cores; never in parallel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "ensemble",
    "store",
    "kube_store",
    "failover",
    "reconcile",
    "zookeepercluster",
    "controlplane",
    "discovery",
    "backup",
]

if __name__ == "__main__":
    failed = []
    for name in ORDER:
        script = HERE / f"{name}.py"
        if not script.exists():
            continue
        print(f"== bench/{name}.py", flush=True)
        if subprocess.run([sys.executable, str(script)], check=False).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")
