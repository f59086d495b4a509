"""``zkop operator run|status`` and the local operator replicas that ``zkop up`` starts."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from zkop.cli import connection
from zkop.cli.output import Output, console, emit, table
from zkop.cli.session import root_option, zk_option
from zkop.client import connect
from zkop.client.bridge import ZkClient
from zkop.coord.election import read_leader
from zkop.errors import ZkopError
from zkop.platform.local import statedir
from zkop.platform.local.ensemble import LocalEnsemble
from zkop.platform.local.process import ProcessUnit
from zkop.runtime import logs
from zkop.runtime.manager import Manager, ManagerOptions, StoreFactory
from zkop.store.base import ResourceStore

app = typer.Typer(help="Run or inspect the operator.", no_args_is_help=True)
log = logging.getLogger("zkop.operator")

MANAGER_NAME = "zkop-operator"


def load_config(path: Path | None) -> dict[str, Any]:
    """OperatorConfig spec values (defaults when no file is given)."""
    from zkop.api import OperatorConfig, load_yaml

    if path is None:
        return {"target_namespace": "", "leader_elect": True, "session_timeout": 10.0}
    try:
        text = path.read_text()
    except OSError as exc:
        raise ZkopError(f"cannot read {path}: {exc.strerror or exc}") from None
    objs = [o for o in load_yaml(text, source=str(path)) if isinstance(o, OperatorConfig)]
    if not objs:
        raise ZkopError(f"{path} holds no OperatorConfig", hint="see examples/operatorconfig.yaml")
    spec = objs[0].spec
    return {
        "target_namespace": spec.target_namespace,
        "leader_elect": spec.leader_election.leader_elect,
        "session_timeout": float(spec.leader_election.session_timeout_seconds),
    }


@dataclass(frozen=True)
class KubeTarget:
    """Desired state in the Kubernetes API (custom resources) instead of ZooKeeper."""

    kubeconfig: str | None
    context: str | None


async def build_manager(
    conn: connect.Connection,
    state_dir: Path,
    cfg: dict[str, Any],
    identity: str | None,
    metrics_port: int | None,
    *,
    kube: KubeTarget | None = None,
    platform_name: str = "local",
    app_image: str | None = None,
) -> Manager:
    """The composition root: which store and which platforms the controllers run on
    (``app_image``: on Kubernetes, the image of instances whose template names none)."""
    from zkop.backup.schedule import ScheduledBackups
    from zkop.controllers import operatorconfig, zookeeperznode
    from zkop.controllers.application import controller as application
    from zkop.controllers.zookeepercluster import controller as zookeepercluster

    namespace = cfg["target_namespace"] or None
    options = ManagerOptions(
        name=MANAGER_NAME,
        leader_elect=cfg["leader_elect"],
        session_timeout=cfg["session_timeout"],
        namespace=namespace,
        metrics_port=metrics_port,
        identity=identity,
    )
    store: StoreFactory | None = None
    if kube is not None:
        store = kube_store_factory(kube, identity or MANAGER_NAME)
    controllers = [operatorconfig.controller(namespace)]
    if platform_name == "local":
        from zkop.platform.local.applications import LocalInstancePlatform
        from zkop.platform.local.platform import LocalPlatform
        from zkop.platform.local.secrets import LocalSecretStore
        from zkop.platform.local.zookeeper import LocalZookeeperPlatform

        platform = LocalPlatform(state_dir, MANAGER_NAME)
        instances = LocalInstancePlatform(state_dir, platform.fence)
        zookeepers = LocalZookeeperPlatform(state_dir, platform.fence)
        secrets = LocalSecretStore(state_dir, platform.fence)
        controllers += [
            zookeepercluster.controller(
                namespace, zookeepers, backups=ScheduledBackups(zookeepers, state_dir / "backups")
            ),
            application.controller(namespace, instances, conn.root, secrets=secrets),
            zookeeperznode.controller(namespace, zookeepers, secrets),
        ]
        return Manager(conn, options, controllers=controllers, platforms=[platform], runnables=[instances], store=store)
    if kube is None:
        raise ZkopError("--platform kubernetes needs the Kubernetes API", hint="pass --kubeconfig PATH or in-cluster")
    from zkop.api.application import check_image
    from zkop.client.kube import api_client
    from zkop.platform.kubernetes.applications import DEFAULT_IMAGE, KubernetesInstancePlatform

    if app_image is not None:
        try:
            check_image(app_image)
        except ValueError as exc:
            raise ZkopError(f"--app-image: {exc}") from None
    from zkop.platform.kubernetes.zookeeper import KubernetesZookeeperPlatform

    api = await api_client(kube.kubeconfig, kube.context)
    coordination = conn.client(session_timeout=cfg["session_timeout"])
    opening = asyncio.Lock()  # one session for both platforms, opened by whichever asks first
    opened: list[bool] = []

    async def session() -> ZkClient:
        async with opening:
            if not opened:
                await coordination.start(timeout=30)
                opened.append(True)
        return coordination

    epoch_path = f"{conn.root}/leader/{MANAGER_NAME}/epoch"
    members = KubernetesZookeeperPlatform(
        api, session, root=conn.root, epoch_path=epoch_path, acl=conn.acl(), files_image=app_image or DEFAULT_IMAGE
    )
    pods = KubernetesInstancePlatform(
        api,
        session,
        root=conn.root,
        epoch_path=epoch_path,
        acl=conn.acl(),
        namespace=namespace,
        default_image=app_image or DEFAULT_IMAGE,
    )
    from zkop.platform.kubernetes.secrets import KubernetesSecretStore

    secret_store = KubernetesSecretStore(api, members.check)
    controllers += [
        # Backups go to the operator's backup directory (a volume of its Pod; spec.backup.directory).
        zookeepercluster.controller(namespace, members, backups=ScheduledBackups(members, state_dir / "backups")),
        application.controller(namespace, pods, conn.root, secrets=secret_store),
        zookeeperznode.controller(namespace, members, secret_store),
    ]
    return Manager(conn, options, controllers=controllers, platforms=[members, pods], runnables=[pods], store=store)


def kube_store_factory(kube: KubeTarget, source: str) -> StoreFactory:
    async def factory(client: ZkClient) -> ResourceStore:
        from zkop.client.kube import api_client
        from zkop.store.kube import KubeStore

        api = await api_client(kube.kubeconfig, kube.context)
        return KubeStore(api, coordination=client, source=source)

    return factory


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="An OperatorConfig YAML file."),
    zk: str | None = zk_option(),
    root: str | None = root_option(),
    identity: str | None = typer.Option(None, "--identity", help="This replica's name (default host:pid)."),
    metrics_port: int = typer.Option(0, "--metrics-port", help="Port for /metrics, /healthz, /readyz (0: any)."),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="Address to serve them on (0.0.0.0 in a Pod, for probes and scrapes)."
    ),
    log_level: str = typer.Option("INFO", "--log-level"),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        envvar="ZKOP_KUBECONFIG",
        help="Keep desired state in this Kubernetes API (custom resources); 'in-cluster' inside a Pod.",
    ),
    context: str | None = typer.Option(None, "--context", help="The kubeconfig context to use."),
    platform_name: str = typer.Option(
        "local",
        "--platform",
        help="Where members and instances run: local (processes on this machine) or kubernetes (Pods).",
    ),
    dashboard: bool = typer.Option(False, "--dashboard", help="Also serve the live dashboard on the metrics port."),
    app_image: str | None = typer.Option(
        None,
        "--app-image",
        envvar="ZKOP_APP_IMAGE",
        help="(kubernetes) Image of Application instances whose template names none (default: zkop:<version>).",
    ),
) -> None:
    """Run an operator replica in the foreground (SIGTERM hands leadership over at once).

    Coordination (the election and its fencing epoch, member ids, the registry) is always in
    ZooKeeper (--zk); desired state is there too unless --kubeconfig names a Kubernetes API."""
    logs.setup(log_level.upper())
    state_dir = ctx.obj.state_dir
    cfg = load_config(config)
    conn = connection.resolve(zk, state_dir, root)
    kube = None
    if kubeconfig is not None or context is not None:
        kube = KubeTarget(kubeconfig, context)
    if platform_name not in ("local", "kubernetes"):
        raise ZkopError(f"--platform {platform_name!r} is not known", hint="use local or kubernetes")

    # On a local control plane each replica is also a keeper in waiting (one acts, by a lock):
    # the control plane heals as long as any replica or the keeper process lives.
    local_control_plane = zk is None and LocalEnsemble(state_dir, statedir.CONTROL_PLANE).exists()

    async def main() -> None:
        manager = await build_manager(
            conn, state_dir, cfg, identity, metrics_port, kube=kube, platform_name=platform_name, app_image=app_image
        )
        manager.options.metrics_host = metrics_host
        stop = asyncio.Event()

        def on_signal() -> None:
            stop.set()
            manager.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        keeper_task = None
        if local_control_plane:
            from zkop.cli.keeper import keep

            keeper_task = asyncio.create_task(keep(state_dir, manager.identity, stop), name="keeper")
        dashboard_task = None
        if dashboard:
            from zkop.cli.dashboard import attach

            dashboard_task = attach(manager, conn, state_dir if local_control_plane else None, stop)
        try:
            await manager.run()
        finally:
            stop.set()
            if keeper_task is not None:
                await keeper_task
            if dashboard_task is not None:
                await dashboard_task

    asyncio.run(main())


async def _status(conn: connect.Connection) -> dict[str, Any]:
    client = conn.client()
    await client.start(timeout=10)
    try:
        info = await read_leader(client, f"{conn.root}/leader/{MANAGER_NAME}")
    finally:
        await client.stop()
    return {
        "manager": MANAGER_NAME,
        "replicas": len(info.candidates),
        "candidates": info.candidates,
        "leader": info.identity,
        "epoch": info.epoch,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.since)) if info.since else None,
    }


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    zk: str | None = zk_option(),
    output: Output = typer.Option(Output.table, "--output", "-o"),
) -> None:
    """Show the operator replicas, the leader, its epoch and since when it leads."""
    data = asyncio.run(_status(connection.resolve(zk, ctx.obj.state_dir)))
    if emit(data, output):
        return
    console.print(
        table(
            ("MANAGER", "REPLICAS", "LEADER", "EPOCH", "SINCE"),
            [(data["manager"], data["replicas"], data["leader"], data["epoch"], data["since"])],
        )
    )
    if data["candidates"]:
        console.print("in line: " + ", ".join(data["candidates"]))


# ---- local replicas ---------------------------------------------------------------


def replica_unit(state_dir: Path, n: int) -> ProcessUnit:
    return ProcessUnit(state_dir / "operators" / f"replica-{n}", log_name="operator.log")


def start_replicas(state_dir: Path, count: int, config: Path | None = None) -> list[int]:
    pids = []
    for n in range(1, count + 1):
        unit = replica_unit(state_dir, n)
        argv = [
            sys.executable,
            "-m",
            "zkop.cli.main",
            "--state-dir",
            str(state_dir),
            "operator",
            "run",
            "--identity",
            f"replica-{n}",
        ]
        if config is not None:
            argv += ["--config", str(config)]
        pids.append(unit.start(argv).pid)
    return pids


async def wait_leader(conn: connect.Connection, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = await _status(conn)
        if data["leader"]:
            return data
        if time.monotonic() > deadline:
            raise ZkopError(
                f"no operator replica became leader within {timeout:.0f}s",
                hint="see operators/replica-*/operator.log in the state dir",
            )
        await asyncio.sleep(0.1)
