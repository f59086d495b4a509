"""The ``zkop`` command."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import typer

import zkop
from zkop.cli import apps, cluster, local, resources
from zkop.cli import dashboard as dashboard_cli
from zkop.cli import files as files_cli
from zkop.cli import keeper as keeper_cli
from zkop.cli import kube as kube_cli
from zkop.cli import operator as operator_cli
from zkop.cli import proxy as proxy_cli
from zkop.cli import recover as recover_cli
from zkop.cli import registry as registry_cli
from zkop.cli.output import Output, console, emit, fail
from zkop.errors import ZkopError
from zkop.platform.local import statedir

app = typer.Typer(
    name="zkop",
    help="Operate ZooKeeper ensembles and applications coordinated by ZooKeeper.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Context:
    def __init__(self, state_dir: str | None) -> None:
        self._state_dir_opt = state_dir

    @property
    def state_dir(self) -> Path:
        return statedir.resolve(self._state_dir_opt)


app.add_typer(operator_cli.app, name="operator")
app.add_typer(keeper_cli.app, name="keeper")
app.add_typer(kube_cli.app, name="kube")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(files_cli.app, name="files", hidden=True)
resources.register(app)
cluster.register(app)
proxy_cli.register(app)
apps.register(app)
recover_cli.register(app)
dashboard_cli.register(app)


@app.callback()
def main(
    ctx: typer.Context,
    state_dir: str | None = typer.Option(
        None,
        "--state-dir",
        envvar="ZKOP_STATE_DIR",
        help="Where the local platform keeps data, configs, logs and pid records.",
    ),
) -> None:
    ctx.obj = Context(state_dir)


@app.command()
def up(
    ctx: typer.Context,
    members: int | None = typer.Option(
        None, "--members", "-m", help="Members of the control-plane ensemble (default 3); on a running one, scales it."
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once the ensemble serves."),
    port_base: int | None = typer.Option(
        None, "--port-base", help="Use fixed ports from here (3 per member) instead of free ones."
    ),
    zookeeper_home: str | None = typer.Option(
        None, "--zookeeper-home", envvar="ZOOKEEPER_HOME", help="An unpacked ZooKeeper release."
    ),
    heap: int = typer.Option(128, "--heap-mb", help="JVM heap of each member, in MiB."),
    operators: int = typer.Option(2, "--operators", help="Operator replicas to start (0: none)."),
) -> None:
    """Start the local control plane (ZooKeeper and operator replicas) and wait for quorum."""
    local.up(ctx.obj.state_dir, members, detach, port_base, zookeeper_home, heap, operators)


@app.command()
def down(
    ctx: typer.Context,
    purge: bool = typer.Option(False, "--purge", help="Also delete all data (asks first)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before purging."),
) -> None:
    """Stop every process zkop started for this state dir."""
    local.down(ctx.obj.state_dir, purge, yes)


@app.command()
def status(
    ctx: typer.Context,
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
) -> None:
    """Show the local control plane's members."""
    local.status(ctx.obj.state_dir, output)


@app.command()
def demo(
    ctx: typer.Context,
    keep: bool = typer.Option(False, "--keep", help="Leave everything running afterwards."),
    platform: str = typer.Option(
        "local",
        "--platform",
        help="local (processes) or kubernetes (Pods on the test bed: a real API server and a node agent; "
        "needs `make kube-tools`).",
    ),
) -> None:
    """Run the narrated tour on real processes (in a temporary state dir unless one is given)."""
    from zkop.cli import demo as demo_mod

    explicit = ctx.obj._state_dir_opt
    demo_mod.demo(statedir.resolve(explicit) if explicit else None, keep, platform)


@app.command()
def version(
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
) -> None:
    """Show the versions of zkop, ZooKeeper, Java and Python."""
    from zkop.zk.distribution import java_version, locate

    info: dict[str, str] = {"zkop": zkop.__version__, "python": platform.python_version()}
    try:
        dist = locate()
        info |= {
            "zookeeper": dist.version,
            "zookeeperHome": str(dist.home),
            "java": java_version(dist.java),
        }
    except ZkopError as exc:
        info["zookeeper"] = f"not found: {exc}"
    if emit(info, output):
        return
    for key, value in info.items():
        console.print(f"{key:>14}: {value}")


def run() -> None:
    """Console entry point: user errors are one line and a non-zero exit, never a traceback."""
    try:
        app(prog_name="zkop")
    except ZkopError as exc:
        fail(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        fail("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    run()
