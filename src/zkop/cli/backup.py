"""``zkop backup create | list | restore``: backups of ZookeeperClusters. On Kubernetes
(``--kubeconfig``) the operator takes them and seeds a restored cluster; see the README.

``create zkc NAME`` copies a serving member's newest snapshot and the transaction logs after it
(the member keeps running), checks that they cover every transaction from the snapshot on, reads
the ACLs and quotas as the super user, and writes it all with a manifest of sha256 sums into
``--dir`` (default ``backups/`` in the state dir). ``list`` shows the backups there.
``restore NAME --into NEW`` checks every byte of the backup first, refuses a cluster that exists,
starts the new cluster's first member on the backup's data and creates the ZookeeperCluster: the
operator adds members with new ids up to ``spec.replicas``; its status says which backup and zxid
it holds (``status.restored``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from zkop.api import ZookeeperCluster, parse_object, resolve_kind
from zkop.cli.output import Output, console, emit, table
from zkop.cli.session import (
    KubeTarget,
    Target,
    context_option,
    kubeconfig_option,
    open_store,
    root_option,
    run,
    timeout_option,
    user_errors,
    zk_option,
)
from zkop.errors import ValidationError, ZkopError
from zkop.store import NotFound
from zkop.store.modify import set_annotation

app = typer.Typer(name="backup", help="Back ZookeeperClusters up, list the backups, restore one.", no_args_is_help=True)


def _dir(ctx: typer.Context, directory: Path | None) -> Path:
    return directory.expanduser() if directory is not None else ctx.obj.state_dir / "backups"


def _manifest_row(m: Any) -> dict[str, Any]:
    return {
        "name": m.name,
        "cluster": f"{m.namespace}/{m.cluster}",
        "createdAt": m.created,
        "snapshotZxid": f"0x{m.snapshot_zxid:x}",
        "lastZxid": f"0x{m.last_zxid:x}",
        "member": m.member_id,
        "files": len(m.files),
        "bytes": m.size,
        "acls": m.acls,
        "quotas": m.quotas,
        "zookeeperVersion": m.zookeeper_version,
    }


@app.command()
def create(
    ctx: typer.Context,
    kind: str = typer.Argument(..., help="zookeepercluster (zkc)"),
    name: str = typer.Argument(..., help="The cluster."),
    namespace: str = typer.Option("default", "--namespace", "-n"),
    directory: Path | None = typer.Option(None, "--dir", help="Where backups are kept (default: STATE/backups)."),
    backup: str | None = typer.Option(None, "--name", help="The backup's name (default: NS-NAME-<UTC time>)."),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
    wait: float = typer.Option(
        300.0, "--wait", min=1, help="On Kubernetes: seconds to wait for the operator's backup."
    ),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
) -> None:
    """Back a running cluster up (nothing is stopped). On Kubernetes the operator takes it, into
    its backup directory: this asks for one and waits for it."""
    from zkop.backup.create import create_backup
    from zkop.backup.target import DirectoryTarget
    from zkop.platform.base import ClusterRef
    from zkop.platform.local.zookeeper import LocalZookeeperPlatform

    with user_errors():
        if resolve_kind(kind).kind != "ZookeeperCluster":
            raise ValidationError(f"backups are of zookeeperclusters, not {kind}")
        where = Target.of(ctx, zk, timeout, root, kubeconfig, context)
        if where.on_kubernetes:
            if backup is not None:
                raise ValidationError("--name: on Kubernetes the operator names its backups", hint="leave --name out")
            status = run(_ask_operator(where.kube(), namespace, name, where.timeout, wait))
            if emit(status, output):
                return
            console.print(
                f"backup {status['name']} of zookeepercluster/{name}: up to zxid {status['zxid']}, "
                f"taken by the operator into {status.get('location')}"
            )
            return
        target = DirectoryTarget(_dir(ctx, directory))

        async def main() -> Any:
            async with open_store(where.where(), where.timeout) as store:
                try:
                    obj = await store.get("ZookeeperCluster", namespace, name)
                except NotFound:
                    raise ZkopError(f"zookeepercluster {namespace}/{name} does not exist") from None
            assert isinstance(obj, ZookeeperCluster)
            spec = obj.spec.model_dump(mode="json", by_alias=True, exclude={"backup"})
            platform = LocalZookeeperPlatform(ctx.obj.state_dir, None)
            return await create_backup(platform, ClusterRef(namespace, name), target, name=backup, spec=spec)

        manifest = run(main())
    row = _manifest_row(manifest) | {"location": target.location}
    if emit(row, output):
        return
    console.print(
        f"backup {manifest.name} of zookeepercluster/{name}: up to zxid {row['lastZxid']} "
        f"(snapshot {row['snapshotZxid']} from member {manifest.member_id}), {row['files']} files, "
        f"{row['bytes']} bytes, {row['acls']} ACLs, {row['quotas']} quotas, in {target.location}"
    )


async def _ask_operator(kube: KubeTarget, namespace: str, name: str, timeout: float, wait: float) -> dict[str, Any]:
    """Ask the operator for a backup (the annotation) and wait until its status names a new one."""
    from zkop.backup.schedule import REQUEST_ANNOTATION

    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    async with open_store(kube, timeout) as store:
        try:
            obj = await store.get("ZookeeperCluster", namespace, name)
        except NotFound:
            raise ZkopError(f"zookeepercluster {namespace}/{name} does not exist") from None
        assert isinstance(obj, ZookeeperCluster)
        before = obj.status.last_backup.name if obj.status.last_backup else None
        await store.modify("ZookeeperCluster", namespace, name, set_annotation(REQUEST_ANNOTATION, stamp))
        with console.status(
            f"waiting for the operator's backup of zookeepercluster/{name} ({REQUEST_ANNOTATION}={stamp})"
        ):
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                obj = await store.get("ZookeeperCluster", namespace, name)
                assert isinstance(obj, ZookeeperCluster)
                last = obj.status.last_backup
                if last is not None and last.name != before:
                    return dict(last.model_dump(mode="json", by_alias=True), cluster=f"{namespace}/{name}")
                await asyncio.sleep(1.0)
    raise ZkopError(
        f"no new backup of zookeepercluster {namespace}/{name} after {wait:.0f}s",
        hint=f"the operator takes it once the cluster is healthy; see its events (kubectl describe zkc {name})",
    )


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    directory: Path | None = typer.Option(None, "--dir", help="Where backups are kept (default: STATE/backups)."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
) -> None:
    """The backups in a directory, oldest first."""
    from zkop.backup.create import list_manifests
    from zkop.backup.target import DirectoryTarget

    with user_errors():
        target = DirectoryTarget(_dir(ctx, directory))
        rows = [_manifest_row(m) for m in list_manifests(target)]
    if emit(rows, output):
        return
    if not rows:
        console.print(f"no backups in {target.location}")
        return
    columns = ["NAME", "CLUSTER", "CREATED", "LAST-ZXID", "SNAPSHOT", "FILES", "BYTES", "ACLS"]
    keys = ["name", "cluster", "createdAt", "lastZxid", "snapshotZxid", "files", "bytes", "acls"]
    console.print(table(columns, [[r[k] for k in keys] for r in rows]))


@app.command()
def restore(
    ctx: typer.Context,
    backup: str = typer.Argument(..., help="The backup (zkop backup list)."),
    into: str = typer.Option(..., "--into", help="Name of the new ZookeeperCluster (it must not exist)."),
    namespace: str = typer.Option("default", "--namespace", "-n"),
    directory: Path | None = typer.Option(None, "--dir", help="Where backups are kept (default: STATE/backups)."),
    replicas: int | None = typer.Option(None, "--replicas", min=1, max=9, help="Members (default: the backup's)."),
    zk: str | None = zk_option(),
    timeout: float = timeout_option(),
    root: str | None = root_option(),
    kubeconfig: str | None = kubeconfig_option(),
    context: str | None = context_option(),
    wait: float = typer.Option(300.0, "--wait", min=1, help="On Kubernetes: seconds to wait for the first member."),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
) -> None:
    """Restore a backup into a new cluster (never over one that exists). On Kubernetes the
    backup is checked here first (--dir: the operator's backup directory as this machine sees
    it), then the operator hands it to the first member's seed step and checks it again."""
    from zkop.backup.restore import seed_local, verify
    from zkop.backup.target import DirectoryTarget
    from zkop.controllers.zookeepercluster.controller import (
        RESTORED_FROM_ANNOTATION,
        RESTORED_ZXID_ANNOTATION,
        member_template,
    )
    from zkop.platform.base import ClusterRef
    from zkop.platform.local.zookeeper import LocalZookeeperPlatform
    from zkop.zk.txnlog import format_zxid

    with user_errors():
        target = DirectoryTarget(_dir(ctx, directory))
        where = Target.of(ctx, zk, timeout, root, kubeconfig, context)
        ref = ClusterRef(namespace, into)
        platform = LocalZookeeperPlatform(ctx.obj.state_dir, None)
        kube = where.on_kubernetes

        async def main() -> tuple[Any, int]:
            async with open_store(where.where(), where.timeout) as store:
                try:
                    await store.get("ZookeeperCluster", namespace, into)
                    raise ZkopError(
                        f"zookeepercluster {namespace}/{into} exists: restoring over a cluster is refused",
                        hint="restore into a new name (--into)",
                    )
                except NotFound:
                    pass
                if not kube and platform.ensemble(ref).exists():
                    raise ZkopError(
                        f"zookeepercluster {namespace}/{into} still has members in {platform.ensemble(ref).dir}",
                        hint="restore into a new name (--into)",
                    )
                with tempfile.TemporaryDirectory(prefix="zkop-restore-") as tmp:
                    manifest = await asyncio.to_thread(verify, target, backup, Path(tmp))
                    spec = dict(manifest.spec)
                    if replicas is not None:
                        spec["replicas"] = replicas
                    doc = {
                        "apiVersion": "zkop.io/v1",
                        "kind": "ZookeeperCluster",
                        "metadata": {
                            "name": into,
                            "namespace": namespace,
                            "annotations": {
                                RESTORED_FROM_ANNOTATION: manifest.name,
                                RESTORED_ZXID_ANNOTATION: format_zxid(manifest.last_zxid),
                            },
                        },
                        "spec": spec,
                    }
                    obj = parse_object(doc, source=f"the spec kept in backup {manifest.name}")
                    assert isinstance(obj, ZookeeperCluster)
                    if kube:
                        await store.create(obj)
                        await _wait_restored(store, namespace, into, wait)
                        return manifest, manifest.last_zxid
                    restored = await seed_local(platform, ref, member_template(obj), manifest, Path(tmp))
                await store.create(obj)
                return manifest, restored

        manifest, restored = run(main())
    info = {
        "backup": manifest.name,
        "cluster": f"{namespace}/{into}",
        "restoredZxid": format_zxid(restored),
        "from": f"{manifest.namespace}/{manifest.cluster}",
    }
    if emit(info, output):
        return
    console.print(
        f"zookeepercluster/{into} restored from {manifest.name} up to zxid {info['restoredZxid']}; "
        "its first member serves, the operator adds the others"
    )


async def _wait_restored(store: Any, namespace: str, name: str, wait: float) -> None:
    """Until the operator reports the restored data served (``status.restored``)."""
    with console.status(f"waiting for zookeepercluster/{name}'s first member to serve the backup's data"):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            obj = await store.get("ZookeeperCluster", namespace, name)
            if obj.status.restored is not None:
                return
            await asyncio.sleep(1.0)
    raise ZkopError(
        f"zookeepercluster {namespace}/{name} was created but its first member does not serve after {wait:.0f}s",
        hint=f"see its events (kubectl describe zkc {name}): RestoreFailed says why",
    )


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(app, name="backup")
