"""Commands for the local control plane: up, down, status."""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from zkop.cli.output import Output, console, emit, table
from zkop.errors import ZkopError
from zkop.platform.local import keeper, statedir
from zkop.platform.local.ensemble import EnsembleError, LocalEnsemble, MemberStatus
from zkop.platform.local.process import ProcessUnit
from zkop.zk.config import ServerSettings


def control_plane(state_dir: Path) -> LocalEnsemble:
    return LocalEnsemble(state_dir, statedir.CONTROL_PLANE)


def member_rows(statuses: list[MemberStatus], name: str) -> list[list[Any]]:
    return [
        [
            name,
            s.id,
            s.pid,
            s.address.client_endpoint,
            s.role,
            s.state.zxid_hex if s.serving else None,
            s.restarts,
        ]
        for s in statuses
    ]


MEMBER_COLUMNS = ("ENSEMBLE", "MYID", "PID", "CLIENT", "ROLE", "ZXID", "RESTARTS")


def status_dict(ensemble: LocalEnsemble, statuses: list[MemberStatus]) -> dict[str, Any]:
    record = ensemble.load()
    return {
        "ensemble": ensemble.name,
        "stateDir": str(ensemble.state_dir),
        "connectionString": ensemble.connection_string(),
        "desiredMembers": record.desired_members or len(record.members),
        "keeper": keeper.holder(ensemble.state_dir),
        "events": keeper.EventLog(ensemble.state_dir).read()[-10:],
        "members": [
            {
                "myid": s.id,
                "pid": s.pid,
                "clientEndpoint": s.address.client_endpoint,
                "role": s.role,
                "zxid": s.state.zxid_hex if s.serving else None,
                "restarts": s.restarts,
                "version": s.state.version or None,
            }
            for s in statuses
        ],
    }


async def _start_with_progress(ensemble: LocalEnsemble, ids: list[int]) -> list[MemberStatus]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"starting {len(ids)} ZooKeeper member(s)", total=len(ids))
        ensemble.start(ids)

        def on_progress(statuses: list[MemberStatus]) -> None:
            serving = sum(1 for s in statuses if s.serving)
            progress.update(
                task,
                completed=serving,
                description=f"waiting for quorum: {serving}/{len(statuses)} members serving",
            )

        return await ensemble.wait_serving(ids, timeout=90, on_progress=on_progress)


def start_operators(state_dir: Path, count: int) -> None:
    from zkop.cli import connection
    from zkop.cli import operator as op

    with console.status(f"starting {count} operator replicas (leader election on)"):
        op.start_replicas(state_dir, count)
        data = asyncio.run(op.wait_leader(connection.resolve(None, state_dir), timeout=60))
    console.print(f"operator: {data['replicas']} replicas, leader [bold]{data['leader']}[/] (epoch {data['epoch']})")


def _check_members(members: int) -> None:
    if members < 1 or members > 9:
        raise ZkopError(f"--members {members} is out of range", hint="use 1 to 9 (odd is best)")


async def _scale_with_progress(ensemble: LocalEnsemble, members: int, timeout: float = 180.0) -> list[MemberStatus]:
    """Wait while the keeper changes the control plane to ``members`` participants, one at a time."""
    from zkop.controllers.controlplane import CONTROL_PLANE
    from zkop.controllers.zookeepercluster.driver import committed_config
    from zkop.platform.local.zookeeper import LocalZookeeperPlatform, control_plane_naming

    platform = LocalZookeeperPlatform(ensemble.state_dir, None, naming=control_plane_naming)
    deadline = time.monotonic() + timeout
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task(f"scaling the control plane to {members} members", total=members)
        while True:
            obs = await platform.observe(CONTROL_PLANE)
            config, version = await committed_config(obs) if obs else ((), None)
            participants = {m.id for m in config if m.role == "participant"}
            serving = [m for m in (obs.members if obs else ()) if m.id in participants and m.ready]
            progress.update(
                task,
                completed=min(members, len(serving)),
                description=f"scaling the control plane to {members}: {len(serving)} serving in the configuration"
                f" ({len(participants)} participants, config 0x{version or 0:x})",
            )
            if obs and len(participants) == members == len(serving) and len(obs.members) == members:
                return await ensemble.observe()
            if time.monotonic() > deadline:
                raise ZkopError(
                    f"the control plane did not reach {members} members within {timeout:.0f}s",
                    hint="see `zkop status` and its events; the keeper goes on trying",
                )
            await asyncio.sleep(0.25)


def up(
    state_dir: Path,
    members: int | None,
    detach: bool,
    port_base: int | None,
    zookeeper_home: str | None,
    heap_mb: int,
    operators: int = 2,
) -> None:
    from zkop.cli.keeper import start_keeper

    ensemble = control_plane(state_dir)
    if ensemble.exists():
        keeper.set_disabled(state_dir, False)
        running = ensemble.running_members()
        ids = ensemble.member_ids()
        missing = [i for i in ids if i not in running]
        if missing:
            asyncio.run(_start_with_progress(ensemble, missing))
        start_keeper(state_dir)
        record = ensemble.load()
        current = record.desired_members or len(ids)
        if members is not None and members != current:
            _check_members(members)
            ensemble.set_desired_members(members)
            statuses = asyncio.run(_scale_with_progress(ensemble, members))
            console.print(f"[green]the control plane has {members} members[/] (was {current})")
        elif not missing:
            console.print(f"zkop is already up in {state_dir}; nothing was started.")
            statuses = asyncio.run(ensemble.observe())
            console.print(table(MEMBER_COLUMNS, member_rows(statuses, ensemble.name)))
            if operators > 0:
                from zkop.cli import operator as op

                if any(op.replica_unit(state_dir, n).running() is None for n in range(1, operators + 1)):
                    start_operators(state_dir, operators)
            return
        else:
            statuses = asyncio.run(ensemble.observe())
    else:
        members = 3 if members is None else members
        _check_members(members)
        settings = ServerSettings(tick_time=1000, init_limit=10, sync_limit=5, heap_mb=heap_mb)
        ensemble.create(members, settings=settings, zookeeper_home=zookeeper_home, port_base=port_base)
        ensemble.set_desired_members(members)
        try:
            statuses = asyncio.run(_start_with_progress(ensemble, ensemble.member_ids()))
        except (ZkopError, KeyboardInterrupt):
            # A failed first start leaves nothing running and nothing half-made behind.
            ensemble.stop(grace=5)
            ensemble.destroy()
            raise
        keeper.set_disabled(state_dir, False)
        start_keeper(state_dir)
    console.print(f"[green]zkop is up[/] ({len(statuses)} members, state in {state_dir})")
    console.print(table(MEMBER_COLUMNS, member_rows(statuses, ensemble.name)))
    if operators > 0:
        start_operators(state_dir, operators)
    console.print(f"connection string: [bold]{ensemble.connection_string()}[/]")
    if detach:
        return
    console.print("running in the foreground; press Ctrl-C to stop (use -d to detach)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    console.print("stopping...")
    stop_everything(state_dir)


def unit_dirs(state_dir: Path) -> list[Path]:
    """Every directory holding a pid record, in the order they should stop.

    The keeper and the operators stop first (so nothing heals what is being stopped), then
    applications, then ZooKeeper clusters, and the control plane last.
    """
    found = [p.parent for p in state_dir.rglob("pid.json")]

    def rank(path: Path) -> tuple[int, str]:
        rel = path.relative_to(state_dir).parts
        if rel and rel[0] == "keeper":
            return (-1, str(path))
        if rel and rel[0] == "operators":
            return (0, str(path))
        if rel and rel[0] == "apps":
            return (1, str(path))
        if len(rel) > 1 and rel[0] == "ensembles" and rel[1] != statedir.CONTROL_PLANE:
            return (2, str(path))
        return (3, str(path))

    return sorted(found, key=rank)


def stop_everything(state_dir: Path, grace: float = 10.0) -> list[str]:
    keeper.set_disabled(state_dir, True)  # no keeper restarts what is being stopped
    stopped: list[str] = []
    for directory in unit_dirs(state_dir):
        unit = ProcessUnit(directory)
        rec = unit.running()
        if rec is not None and unit.stop(grace):
            stopped.append(f"{directory.relative_to(state_dir)} (pid {rec.pid})")
    return stopped


def down(state_dir: Path, purge: bool, yes: bool) -> None:
    stopped = stop_everything(state_dir)
    for what in stopped:
        console.print(f"stopped {what}")
    has_data = (state_dir / "ensembles").exists() or (state_dir / "apps").exists()
    if purge and has_data:
        if not yes and not typer.confirm(f"Delete all zkop data in {state_dir}?", default=False):
            console.print("kept the data.")
            return
        for sub in ("ensembles", "apps", "operators", "fence", "keeper"):
            shutil.rmtree(state_dir / sub, ignore_errors=True)
        console.print(f"removed zkop data in {state_dir}")
        return
    if not stopped:
        raise ZkopError(f"nothing is running for {state_dir}", hint="`zkop up` starts the control plane")
    console.print(f"[green]zkop is down[/] ({len(stopped)} process(es) stopped)")


def status(state_dir: Path, output: Output) -> None:
    ensemble = control_plane(state_dir)
    if not ensemble.exists():
        raise EnsembleError(f"zkop is not up in {state_dir}", hint="run `zkop up`")
    statuses = asyncio.run(ensemble.observe())
    if emit(status_dict(ensemble, statuses), output):
        return
    data = status_dict(ensemble, statuses)
    console.print(table(MEMBER_COLUMNS, member_rows(statuses, ensemble.name)))
    serving = sum(1 for s in statuses if s.serving)
    console.print(
        f"{serving}/{len(statuses)} members serving (desired {data['desiredMembers']}); "
        f"connection string {ensemble.connection_string()}"
    )
    holder = data["keeper"]
    if holder is None:
        console.print("[yellow]keeper: none is running[/] (`zkop up -d` starts one); nothing heals the control plane")
    else:
        console.print(f"keeper: {holder.get('identity', '?')} (pid {holder.get('pid', '?')})")
    if data["events"]:
        console.print(
            table(
                ("LAST SEEN", "TYPE", "REASON", "MESSAGE"),
                [
                    (e.get("lastTimestamp"), e.get("type"), e.get("reason"), e.get("message"))
                    for e in data["events"][-5:]
                ],
            )
        )
