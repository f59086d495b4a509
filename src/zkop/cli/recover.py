"""``zkop recover zookeepercluster NAME``: rebuild an ensemble that lost quorum for good.

When a majority of a ZookeeperCluster's members lost their data (or cannot come back),
the operator stands still: without quorum no membership change is possible. This command
shows the surviving members and the last zxid each has on disk (a member without quorum
answers no ``srvr``), and, once the user confirms, rebuilds the ensemble from the survivor
with the highest zxid:

a. ``spec.paused: true`` (remembered in an annotation with what it was), and wait until the
   operator reports it stands still;
b. stop every member;
c. back up the survivor's configuration and data, and make its dynamic configuration list
   only itself;
d. start it and wait until it serves (a quorum of one, reconfiguration enabled);
e. forget the other members (their directories kept under ``retained/``; ids never reused);
f. restore ``spec.paused``: the operator then adds members with new ids up to ``spec.replicas``.

Each step is an event on the ZookeeperCluster. A failure after step (a) leaves the cluster
paused with a Warning event, and running the command again continues. Which survivor and
whether recovery is allowed is decided by :mod:`zkop.controllers.zookeepercluster.recover`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from kazoo.exceptions import KazooException
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from zkop.api import Resource, ZookeeperCluster, resolve_kind
from zkop.cli import connection
from zkop.cli.output import Output, console, emit, err_console, table
from zkop.cli.session import root_option, zk_option
from zkop.client import connect
from zkop.controllers.zookeepercluster.recover import (
    RecoveryPlan,
    Refusal,
    SurvivorFacts,
    decide,
)
from zkop.errors import ZkopError
from zkop.platform.local.ensemble import LocalEnsemble, MemberStatus
from zkop.platform.local.recovery import committed_membership, disk_state, isolate_member
from zkop.platform.local.zookeeper import ensemble_name
from zkop.store import NotFound, Store
from zkop.zk import fourlw, txnlog
from zkop.zk.config import MemberAddress

RECOVERY_ANNOTATION = "zkop.io/recovery"
SOURCE = "zkop-recover"
STOP_GRACE = 10.0
NO_OPERATOR_WAIT = 5.0  # how long to wait for an acknowledgement when no operator replica is seen


class RecoveryError(ZkopError):
    pass


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class MemberView:
    status: MemberStatus
    participant: bool
    disk: txnlog.DataDirState

    @property
    def id(self) -> int:
        return self.status.id

    @property
    def process(self) -> str:
        if not self.status.running:
            return "down"
        return "paused" if self.status.paused else "running"

    def facts(self) -> SurvivorFacts:
        return SurvivorFacts(
            id=self.id,
            participant=self.participant,
            running=self.status.running,
            serving=self.status.serving,
            data_present=self.status.data_present,
            last_zxid=self.disk.last_zxid if self.status.data_present else None,
            current_epoch=self.disk.current_epoch,
        )


@dataclass(frozen=True)
class Inspection:
    obj: ZookeeperCluster
    ensemble: LocalEnsemble
    members: tuple[MemberView, ...]
    config: tuple[MemberAddress, ...]
    config_version: int | None
    decision: RecoveryPlan | Refusal

    @property
    def key(self) -> str:
        return f"{self.obj.namespace}/{self.obj.name}"

    def quorum(self) -> dict[str, Any]:
        known = any(m.participant for m in self.members)
        participants = [m for m in self.members if m.participant or not known]
        serving = sum(1 for m in participants if m.status.serving)
        needed = len(participants) // 2 + 1
        return {"participants": len(participants), "serving": serving, "needed": needed, "held": serving >= needed}

    def note(self, m: MemberView) -> str:
        d = self.decision
        why = m.facts().why_not() if any(x.participant for x in self.members) else ""
        if isinstance(d, RecoveryPlan):
            if m.id == d.survivor:
                return "survivor: rebuild from this member"
            if not m.status.data_present:
                return "forgotten (data lost)"
            return f"forgotten, data kept aside ({why or f'rebuilding from member {d.survivor}'})"
        return why or (m.disk.problems[0] if m.disk.problems else "")

    def to_dict(self) -> dict[str, Any]:
        d = self.decision
        decision: dict[str, Any]
        if isinstance(d, RecoveryPlan):
            decision = {
                "recoverable": True,
                "survivor": d.survivor,
                "survivorZxid": txnlog.format_zxid(d.survivor_zxid),
                "membership": list(d.membership),
                "forget": list(d.forget),
                "finishOnly": d.finish_only,
            }
        else:
            decision = {"recoverable": False, "reason": str(d.reason), "message": d.message}
        return {
            "cluster": self.key,
            "replicas": self.obj.spec.replicas,
            "paused": self.obj.spec.paused,
            "configVersion": txnlog.format_zxid(self.config_version) if self.config_version else None,
            "quorum": self.quorum(),
            "members": [
                {
                    "id": m.id,
                    "participant": m.participant,
                    "process": m.process,
                    "serving": m.status.serving,
                    "dataPresent": m.status.data_present,
                    "lastZxid": txnlog.format_zxid(m.disk.last_zxid) if m.disk.last_zxid is not None else None,
                    "epoch": m.disk.epoch,
                    "currentEpoch": m.disk.current_epoch,
                    "acceptedEpoch": m.disk.accepted_epoch,
                    "problems": list(m.disk.problems),
                    "note": self.note(m),
                }
                for m in self.members
            ],
            "decision": decision,
        }

    def print(self, out: Console) -> None:
        rows = [
            [
                m.id,
                "yes" if m.participant else "no",
                m.process,
                "yes" if m.status.serving else "no",
                "yes" if m.status.data_present else "lost",
                m.disk.last_zxid_hex if m.status.data_present else None,
                m.disk.epoch if m.status.data_present else None,
                self.note(m),
            ]
            for m in self.members
        ]
        columns = ("MEMBER", "PARTICIPANT", "PROCESS", "SERVING", "DATA", "LAST ZXID", "EPOCH", "NOTE")
        out.print(table(columns, rows, title=f"zookeepercluster/{self.obj.name} ({self.obj.namespace})"))
        q = self.quorum()
        held = "held" if q["held"] else "lost"
        out.print(f"quorum {held}: {q['serving']} of {q['participants']} participants serve, {q['needed']} needed")
        for m in self.members:
            for problem in m.disk.problems:
                out.print(f"member {m.id}: {problem}", style="yellow")
        d = self.decision
        if isinstance(d, Refusal):
            out.print(f"recovery: refused: {d.message}")
        elif d.finish_only:
            out.print(
                f"recovery: an earlier recovery left member {d.survivor} serving alone; "
                f"left to do: forget member(s) {_ids(d.forget)} and restore spec.paused"
            )
        else:
            grow = self.obj.spec.replicas - len(d.membership)
            out.print(
                f"recovery: rebuild from member {d.survivor} (zxid {txnlog.format_zxid(d.survivor_zxid)}): "
                f"stop every member, make member {d.survivor} the only one, forget "
                f"{'member(s) ' + _ids(d.forget) if d.forget else 'no member'} (data kept under retained/)"
                + (f"; the operator then adds {grow} member(s) with new ids" if grow > 0 else "")
            )


def _ids(ids: Any) -> str:
    return ", ".join(str(i) for i in ids) or "-"


async def inspect_cluster(store: Store, state_dir: Path, namespace: str, name: str) -> Inspection:
    """Read the cluster, its members and their data (nothing is changed)."""
    try:
        obj = await store.get("ZookeeperCluster", namespace, name)
    except NotFound:
        raise RecoveryError(f"zookeepercluster {namespace}/{name} not found") from None
    assert isinstance(obj, ZookeeperCluster)
    ens = LocalEnsemble(state_dir, ensemble_name(namespace, name))
    if not ens.exists():
        raise RecoveryError(
            f"zookeepercluster {namespace}/{name} has no members on the local platform in {state_dir}",
            hint="pass the operator's --state-dir",
        )
    statuses = await ens.observe(timeout=1.0)
    config, version = await committed_membership(ens, statuses)
    disks = await asyncio.to_thread(lambda: {s.id: disk_state(ens, s.id) for s in statuses})
    participants = {a.id for a in config if a.role == "participant"}
    members = tuple(MemberView(s, s.id in participants, disks[s.id]) for s in statuses)
    decision = decide([m.facts() for m in members], interrupted=RECOVERY_ANNOTATION in obj.metadata.annotations)
    return Inspection(obj, ens, members, tuple(config), version, decision)


# --------------------------------------------------------------------------- recovery


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Recovery:
    """The effects, in order, each one recorded as an event on the ZookeeperCluster."""

    def __init__(self, store: Store, conn: connect.Connection, inspection: Inspection, out: Console, timeout: float):
        self.store = store
        self.conn = conn
        self.first = inspection
        self.ens = inspection.ensemble
        self.ns = inspection.obj.namespace
        self.name = inspection.obj.name
        self.out = out
        self.timeout = timeout
        self.step = ""

    # ---- helpers -------------------------------------------------------------------

    async def event(self, type_: str, reason: str, message: str) -> None:
        obj = await self.store.get("ZookeeperCluster", self.ns, self.name)
        await self.store.record_event(obj, type_, reason, message, source=SOURCE)

    def done(self, message: str) -> None:
        self.out.print(f"[green]✓[/] {message}")

    @contextlib.contextmanager
    def progress(self, description: str) -> Iterator[Callable[[str], None]]:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.out,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None)
            yield lambda text: bar.update(task, description=text)

    async def update(self, mutate: Callable[[ZookeeperCluster], ZookeeperCluster | None]) -> ZookeeperCluster:
        """Read, change and write the object, again on a conflict (the operator writes it too)."""

        def change(obj: Resource) -> Resource | None:
            assert isinstance(obj, ZookeeperCluster)
            return mutate(obj)

        written = await self.store.modify("ZookeeperCluster", self.ns, self.name, change)
        assert isinstance(written, ZookeeperCluster)
        return written

    # ---- (a) pause -----------------------------------------------------------------

    async def pause(self) -> tuple[ZookeeperCluster, bool, bool]:
        """Set spec.paused and the annotation; return the object, spec.paused before the
        recovery began (kept in the annotation across interrupted runs) and whether this run
        added the annotation."""
        found: dict[str, Any] = {}

        def mutate(obj: ZookeeperCluster) -> ZookeeperCluster | None:
            raw = obj.metadata.annotations.get(RECOVERY_ANNOTATION)
            found["ours"] = raw is None
            before = obj.spec.paused
            if raw is not None:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    before = bool(json.loads(raw).get("pausedBefore", before))
            found["before"] = before
            if raw is not None and obj.spec.paused:
                return None
            note = json.dumps({"pausedBefore": before, "startedAt": _now()})
            meta = obj.metadata.model_copy(
                update={"annotations": {**obj.metadata.annotations, RECOVERY_ANNOTATION: raw or note}}
            )
            spec = obj.spec.model_copy(update={"paused": True})
            return obj.model_copy(update={"metadata": meta, "spec": spec})

        obj = await self.update(mutate)
        return obj, bool(found["before"]), bool(found["ours"])

    async def restore(self, paused_before: bool) -> ZookeeperCluster:
        def mutate(obj: ZookeeperCluster) -> ZookeeperCluster | None:
            annotations = {k: v for k, v in obj.metadata.annotations.items() if k != RECOVERY_ANNOTATION}
            if obj.spec.paused == paused_before and annotations == obj.metadata.annotations:
                return None
            meta = obj.metadata.model_copy(update={"annotations": annotations})
            spec = obj.spec.model_copy(update={"paused": paused_before})
            return obj.model_copy(update={"metadata": meta, "spec": spec})

        return await self.update(mutate)

    async def operator_replicas(self) -> int:
        """Operator replicas in line for leadership (any manager) on the control plane."""
        base = f"{self.conn.root}/leader"
        count = 0
        with contextlib.suppress(Exception):
            for manager in await self.store.client.get_children(base):
                with contextlib.suppress(Exception):
                    count += len(await self.store.client.get_children(f"{base}/{manager}/candidates"))
        return count

    async def await_standstill(self, obj: ZookeeperCluster) -> str:
        """Wait until the operator reports it has seen spec.paused (status phase Paused at
        this generation). A reconcile in flight when the flag was set has ended by then, since
        one key is never reconciled twice at once."""
        generation = obj.metadata.generation or 0

        def still(o: ZookeeperCluster) -> bool:
            return o.status.phase == "Paused" and (o.status.observed_generation or 0) >= generation

        if still(obj):
            return "the operator stands still"
        replicas = await self.operator_replicas()
        wait = self.timeout if replicas else min(self.timeout, NO_OPERATOR_WAIT)
        try:
            async with asyncio.timeout(wait):
                stream = self.store.watch("ZookeeperCluster", self.ns)
                try:
                    async for ev in stream:
                        if ev.key == obj.key and isinstance(ev.object, ZookeeperCluster) and still(ev.object):
                            return "the operator stands still"
                finally:
                    aclose = getattr(stream, "aclose", None)
                    if aclose is not None:
                        await aclose()
        except TimeoutError:
            if replicas:
                raise RecoveryError(
                    f"the operator did not report spec.paused within {wait:.0f}s ({replicas} replica(s) running)",
                    hint="see `zkop describe zkc " + self.name + "` and the operator's log",
                ) from None
        return "no operator acknowledged spec.paused (none seems to run)"

    # ---- the whole procedure -------------------------------------------------------

    async def run(self) -> None:
        plan = self.first.decision
        assert isinstance(plan, RecoveryPlan)
        what = "finishing an earlier recovery" if plan.finish_only else "recovering from quorum loss"
        obj, paused_before, ours = await self.pause()
        await self.event(
            "Normal",
            "RecoveryPaused",
            f"{what} from member {plan.survivor} (zxid {txnlog.format_zxid(plan.survivor_zxid)}): "
            "spec.paused set so the operator stands still",
        )
        try:
            with self.progress("waiting for the operator to stand still"):
                how = await self.await_standstill(obj)
            again = await inspect_cluster(self.store, self.ens.state_dir, self.ns, self.name)
            if not isinstance(again.decision, RecoveryPlan) or again.decision.survivor != plan.survivor:
                now = again.decision.message if isinstance(again.decision, Refusal) else "another survivor"
                raise RecoveryError(f"the cluster changed while pausing ({now}); nothing was changed, run again")
        except BaseException as exc:
            if ours:
                await self.restore(paused_before)
            with contextlib.suppress(Exception):
                await self.event("Warning", "RecoveryAborted", f"nothing changed: {exc}")
            raise
        self.done(f"spec.paused set ({how})")
        plan = again.decision
        try:
            if not plan.finish_only:
                await self.rebuild(plan)
            await self.forget(plan)
        except BaseException as exc:
            message = (
                f"recovery stopped while {self.step}: {exc}; zookeepercluster {self.key} stays paused "
                f"(spec.paused: true); fix the cause and run `zkop recover zkc {self.name} -n {self.ns}` again"
            )
            with contextlib.suppress(Exception):
                await self.event("Warning", "RecoveryFailed", message)
            if isinstance(exc, Exception):
                raise RecoveryError(message) from exc
            raise
        await self.restore(paused_before)
        replicas = self.first.obj.spec.replicas
        if paused_before:
            tail = "spec.paused stays true, as it was before; set it to false for the operator to add members"
        elif replicas > len(plan.membership):
            tail = f"spec.paused is false again; the operator adds members with new ids up to {replicas}"
        else:
            tail = "spec.paused is false again"
        await self.event("Normal", "RecoveryCompleted", tail)
        self.done(tail)

    @property
    def key(self) -> str:
        return f"{self.ns}/{self.name}"

    async def rebuild(self, plan: RecoveryPlan) -> None:
        ens, survivor = self.ens, plan.survivor
        # (b) stop every member
        self.step = "stopping the members"
        running = [i for i in plan.stop if ens.unit(i).running() is not None]
        with self.progress("stopping members") as say:
            for i in plan.stop:
                say(f"stopping member {i}")
                await asyncio.to_thread(ens.stop_member, i, STOP_GRACE)
        still = [i for i in plan.stop if ens.unit(i).running() is not None]
        if still:
            raise RecoveryError(f"member(s) {_ids(still)} still run after stopping")
        await self.event(
            "Normal",
            "RecoveryMembersStopped",
            f"stopped member(s) {_ids(plan.stop)} ({_ids(running)} were running); data kept",
        )
        self.done(f"stopped member(s) {_ids(plan.stop)}")
        # Stopped, nothing writes any more: the choice must still hold on what is on disk now.
        after = await inspect_cluster(self.store, self.ens.state_dir, self.ns, self.name)
        if not isinstance(after.decision, RecoveryPlan) or after.decision.survivor != survivor:
            raise RecoveryError(f"after stopping, member {survivor} is no longer the member to rebuild from")
        zxid = after.decision.survivor_zxid
        # (c) the survivor's configuration lists only itself
        self.step = f"rewriting member {survivor}'s configuration"
        stamp = time.strftime("%Y%m%dT%H%M%S")
        backup = ens.dir / "retained" / f"recovery-{stamp}" / f"member-{survivor}"
        with self.progress(f"copying member {survivor}'s data and configuration aside"):
            isolated = await asyncio.to_thread(isolate_member, ens, survivor, backup)
        await self.event(
            "Normal",
            "RecoveryReconfigured",
            f"member {survivor}'s dynamic configuration lists only itself; its previous configuration "
            f"and data are copied to {isolated.backup}",
        )
        self.done(f"member {survivor} configured alone (backup in {isolated.backup})")
        # (d) start it and wait until it serves
        self.step = f"starting member {survivor}"
        with self.progress(f"starting member {survivor}") as say:
            await asyncio.to_thread(ens.start_member, survivor)

            def on_progress(statuses: list[MemberStatus]) -> None:
                s = next((x for x in statuses if x.id == survivor), None)
                say(f"waiting for member {survivor} to serve ({s.role if s else 'unknown'})")

            statuses = await ens.wait_serving([survivor], timeout=self.timeout, on_progress=on_progress)
        me = next(s for s in statuses if s.id == survivor)
        conf = await fourlw.conf(me.address.host, me.address.client_port, timeout=5.0)
        if [m.id for m in conf.members] != [survivor]:
            raise RecoveryError(f"member {survivor} serves with members {[m.id for m in conf.members]}, not alone")
        await self.event(
            "Normal",
            "RecoverySurvivorServing",
            f"member {survivor} serves alone with every transaction up to {txnlog.format_zxid(zxid)} "
            f"(zxid now {me.state.zxid_hex}, configuration version {txnlog.format_zxid(conf.config_version)})",
        )
        self.done(f"member {survivor} serves alone (zxid {me.state.zxid_hex})")

    async def forget(self, plan: RecoveryPlan) -> None:
        ens = self.ens
        # (e) forget the others: ids never reused, data kept aside
        self.step = "forgetting the other members"
        for i in plan.forget:
            await asyncio.to_thread(ens.stop_member, i, STOP_GRACE)
            await asyncio.to_thread(ens.forget_member, i, purge_data=False)
        next_id = ens.load().next_id
        if plan.forget:
            await self.event(
                "Normal",
                "RecoveryMembersForgotten",
                f"member(s) {_ids(plan.forget)} forgotten; their directories are kept under "
                f"{ens.dir / 'retained'}; new members get ids from {next_id}",
            )
        self.done(f"forgot member(s) {_ids(plan.forget)}; new members get ids from {next_id}")
        self.step = "restoring spec.paused"


# --------------------------------------------------------------------------- command


def _run(
    conn: connect.Connection,
    state_dir: Path,
    namespace: str,
    name: str,
    *,
    yes: bool,
    dry_run: bool,
    output: Output,
    timeout: float,
) -> None:
    machine = output in (Output.json, Output.yaml)
    out = err_console if machine else console

    async def look() -> Inspection:
        client = conn.client()
        await client.start(timeout=10)
        try:
            return await inspect_cluster(Store(client, root=conn.root, acl=conn.acl()), state_dir, namespace, name)
        finally:
            await client.stop()

    inspection = asyncio.run(look())
    if dry_run:
        if not emit(inspection.to_dict(), output):
            inspection.print(console)
        return
    if isinstance(inspection.decision, Refusal):
        raise RecoveryError(f"not recovering zookeepercluster {namespace}/{name}: {inspection.decision.message}")
    if not emit(inspection.to_dict(), output):
        inspection.print(console)
    if not yes and not typer.confirm(
        f"Rebuild zookeepercluster {namespace}/{name} from member {inspection.decision.survivor}?",
        default=False,
        err=machine,
    ):
        raise RecoveryError("not confirmed; nothing changed")

    async def act() -> None:
        client = conn.client()
        await client.start(timeout=10)
        try:
            store = Store(client, root=conn.root, acl=conn.acl())
            await Recovery(store, conn, inspection, out, timeout).run()
        finally:
            await client.stop()

    asyncio.run(act())


def register(app: typer.Typer) -> None:
    @app.command()
    def recover(
        ctx: typer.Context,
        kind: str = typer.Argument(..., help="zookeepercluster (zkc)"),
        name: str = typer.Argument(...),
        namespace: str = typer.Option("default", "--namespace", "-n"),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before rebuilding."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Only show the survivors and what would be done."),
        output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
        timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the operator and the survivor."),
        zk: str | None = zk_option(),
        root: str | None = root_option(),
    ) -> None:
        """Rebuild a ZooKeeper ensemble that lost quorum for good from its most recent survivor."""
        info = resolve_kind(kind)
        if info.kind != "ZookeeperCluster":
            raise ZkopError(f"recover applies to zookeeperclusters, not {info.plural}")
        if not dry_run and not yes and not sys.stdin.isatty():
            raise ZkopError(
                "recover asks before it changes anything, and stdin is not a terminal; nothing changed",
                hint="pass --yes, or --dry-run to only look",
            )
        conn = connection.resolve(zk, ctx.obj.state_dir, root)
        try:
            _run(conn, ctx.obj.state_dir, namespace, name, yes=yes, dry_run=dry_run, output=output, timeout=timeout)
        except KazooException as exc:
            raise ZkopError(f"the control plane at {conn.hosts} failed: {type(exc).__name__} {exc}") from None


__all__ = ["RECOVERY_ANNOTATION", "Inspection", "Recovery", "RecoveryError", "inspect_cluster", "register"]
