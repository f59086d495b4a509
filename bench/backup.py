"""Backup and restore of a running cluster, next to doing the same work by hand.

    python bench/backup.py [--znodes 20000] [--reps 3]

A 3-member cluster on the local platform (members made as the operator's planner makes them)
holds ``--znodes`` znodes of 256 bytes, each with a digest ACL. Timed, interleaved, ``--reps``
times:

    backup   zkop: ``create_backup`` (a follower's newest snapshot and the logs after it copied
             and checked, every ACL and quota read as the super user, sha256 of every file,
             the manifest)
             by hand: a copy of the same member's ``version-2`` files and a kazoo walk of the
             tree reading every znode's ACL and children (no checks, no checksums)
    restore  zkop: ``verify`` (every byte checked) and ``seed_local`` (member 1 of a new
             cluster placed on the data, started, serving)
             by hand: the same files copied into a fresh one-member ensemble's data
             directory, started, serving (no checks)

Writes bench/results/backup.json; ratios are zkop / by hand (above 1: zkop is slower).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from common import ratio, summary, write
from zkop.api import ZookeeperCluster, parse_object
from zkop.backup.create import create_backup
from zkop.backup.restore import seed_local, verify
from zkop.backup.target import DirectoryTarget
from zkop.cli.local import stop_everything
from zkop.controllers.zookeepercluster.controller import member_template
from zkop.platform.base import ClusterRef, MemberTemplate
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.zookeeper import LocalZookeeperPlatform
from zkop.zk import auth

ACL = make_digest_acl("app", "app-password", all=True)


def cluster(name: str) -> ZookeeperCluster:
    obj = parse_object(
        {
            "apiVersion": "zkop.io/v1",
            "kind": "ZookeeperCluster",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 3, "config": {"tickTime": 500, "initLimit": 20, "syncLimit": 10}},
        }
    )
    assert isinstance(obj, ZookeeperCluster)
    return obj


async def serving(platform: LocalZookeeperPlatform, ref: ClusterRef, n: int, timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            obs = await platform.observe(ref)
            if obs is not None and sum(m.ready for m in obs.members) == n:
                return
            await asyncio.sleep(0.2)


async def make_cluster(platform: LocalZookeeperPlatform, ref: ClusterRef, template: MemberTemplate) -> None:
    """Members 1..3 made at once with the configuration listing all three (the planner's bootstrap)."""
    addresses = [await platform.reserve_address(ref, i, template, epoch=None) for i in (1, 2, 3)]
    for i in (1, 2, 3):
        await platform.ensure_member(ref, i, template, addresses, epoch=None)
    await serving(platform, ref, 3)


def fill(hosts: str, znodes: int) -> None:
    zk = KazooClient(hosts, auth_data=[("digest", "app:app-password")], timeout=20)
    zk.start(timeout=30)
    try:
        zk.create("/data", b"", acl=[ACL])
        payload = b"x" * 256
        for i in range(0, znodes, 500):
            pending = [zk.create_async(f"/data/n-{j:06d}", payload, acl=[ACL]) for j in range(i, min(znodes, i + 500))]
            for p in pending:
                p.get()
    finally:
        zk.stop()
        zk.close()


def by_hand_backup(hosts: str, password: str, vdir: Path, dest: Path) -> float:
    started = time.monotonic()
    shutil.copytree(vdir, dest / "data", ignore=shutil.ignore_patterns("acceptedEpoch", "currentEpoch"))
    zk = KazooClient(hosts, auth_data=[auth.super_auth(password)], timeout=20)
    zk.start(timeout=30)
    try:
        acls: dict[str, Any] = {}
        frontier = ["/"]
        while frontier:
            reads = [(p, zk.get_acls_async(p), zk.get_children_async(p)) for p in frontier]
            frontier = []
            for path, acl, children in reads:
                acls[path] = acl.get()[0]
                frontier += [
                    f"{path.rstrip('/')}/{c}" for c in children.get() if f"{path.rstrip('/')}/{c}" != "/zookeeper"
                ]
    finally:
        zk.stop()
        zk.close()
    return time.monotonic() - started


async def by_hand_restore(data: Path, work: Path) -> float:
    ens = LocalEnsemble(work, "by-hand")
    started = time.monotonic()
    try:
        ens.create(1)
        shutil.copytree(data, ens.data_dir(1) / "version-2", dirs_exist_ok=True)
        ens.start()
        await ens.wait_serving(timeout=120)
        return time.monotonic() - started
    finally:
        ens.stop(grace=5)


async def run(znodes: int, reps: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="zkop-bench-backup-"))
    platform = LocalZookeeperPlatform(root / "state", None)
    source = ClusterRef("default", "source")
    template = member_template(cluster("source"))
    out: dict[str, list[float]] = {"backup": [], "backup_by_hand": [], "restore": [], "restore_by_hand": []}
    sizes: dict[str, int] = {}
    try:
        await make_cluster(platform, source, template)
        obs = await platform.observe(source)
        assert obs is not None
        hosts = ",".join(m.endpoint for m in obs.members)
        await asyncio.to_thread(fill, hosts, znodes)
        password = await platform.super_password(source)
        for rep in range(reps):
            target = DirectoryTarget(root / f"backups-{rep}")
            t0 = time.monotonic()
            manifest = await create_backup(platform, source, target, name=f"b{rep}")
            out["backup"].append(time.monotonic() - t0)
            sizes = {"files": len(manifest.files), "bytes": manifest.size, "acls": manifest.acls}
            follower = manifest.member_id
            vdir = platform.ensemble(source).data_dir(follower) / "version-2"
            out["backup_by_hand"].append(
                await asyncio.to_thread(by_hand_backup, hosts, password, vdir, root / f"by-hand-{rep}")
            )
            staging = root / f"staging-{rep}"
            staging.mkdir()
            into = ClusterRef("default", f"restored-{rep}")
            restored_template = member_template(cluster(into.name))
            t0 = time.monotonic()
            checked = await asyncio.to_thread(verify, target, manifest.name, staging)
            await seed_local(platform, into, restored_template, checked, staging)
            out["restore"].append(time.monotonic() - t0)
            await platform.remove_cluster(into, purge_data=True, epoch=None)
            out["restore_by_hand"].append(await by_hand_restore(staging / "data", root / f"hand-restore-{rep}"))
    finally:
        await asyncio.to_thread(stop_everything, root / "state", 5.0)
        for rep in range(reps):
            await asyncio.to_thread(stop_everything, root / f"hand-restore-{rep}", 5.0)
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {"znodes": znodes, "reps": reps, "backup_size": sizes}
    for op in ("backup", "restore"):
        zkop_s, hand_s = statistics.median(out[op]), statistics.median(out[f"{op}_by_hand"])
        result[op] = {
            "zkop_s": summary(out[op]),
            "by_hand_s": summary(out[f"{op}_by_hand"]),
            "ratio_p50_zkop_over_by_hand": ratio(zkop_s, hand_s),
        }
    return result


def main(znodes: int, reps: int) -> None:
    write("backup", asyncio.run(run(znodes, reps)) | {"run": uuid.uuid4().hex[:8]})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--znodes", type=int, default=20000, help="znodes in the cluster (default 20000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (default 3)")
    args = parser.parse_args()
    main(args.znodes, args.reps)
