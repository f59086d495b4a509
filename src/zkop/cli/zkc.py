"""``zkop zkc cert NAME --out DIR``: a client certificate for a ZookeeperCluster with TLS.

The cluster's CA is kept by the operator's platform (locally: under the state dir, mode 0600);
this command signs a new client certificate with it and writes ``ca.crt``, ``tls.crt`` and
``tls.key`` (0600) into DIR, the files a ZooKeeper client needs to connect over TLS.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from zkop.cli.output import Output, console, emit, table
from zkop.cli.session import run, user_errors
from zkop.errors import ValidationError, ZkopError

app = typer.Typer(name="zkc", help="What a ZookeeperCluster's users need: client certificates.", no_args_is_help=True)


def _out_dir(path: Path) -> Path:
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ValidationError(f"--out {path} is not a directory")
    if not path.parent.is_dir():
        raise ValidationError(f"--out {path}: directory {path.parent} does not exist")
    return path


@app.command()
def cert(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The ZookeeperCluster."),
    out: Path = typer.Option(..., "--out", help="Directory to write ca.crt, tls.crt and tls.key into."),
    namespace: str = typer.Option("default", "--namespace", "-n"),
    common_name: str | None = typer.Option(None, "--cn", help="Who the certificate names (default: NAME-client)."),
    validity: int | None = typer.Option(
        None, "--validity-seconds", min=60, help="Lifetime (default: the cluster's member certificate validity)."
    ),
    output: Output = typer.Option(Output.table, "--output", "-o", help="table, yaml or json."),
) -> None:
    """Issue a client certificate signed by the cluster's CA (local platform)."""
    from zkop.platform.base import ClusterRef
    from zkop.platform.local.zookeeper import LocalZookeeperPlatform
    from zkop.zk.tls import write_private

    with user_errors():
        directory = _out_dir(out)
        platform = LocalZookeeperPlatform(ctx.obj.state_dir, None)
        ref = ClusterRef(namespace, name)
        if not platform.ensemble(ref).exists():
            raise ZkopError(
                f"zookeepercluster {namespace}/{name} has no members here", hint="is it applied and running?"
            )
        issued, ca = run(platform.issue_client_certificate(ref, common_name or f"{name}-client", validity=validity))
        directory.mkdir(exist_ok=True)
        write_private(directory / "ca.crt", ca)
        write_private(directory / "tls.crt", issued.cert_pem)
        write_private(directory / "tls.key", issued.key_pem)
    ends = dt.datetime.fromtimestamp(issued.not_after, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    info = {
        "cluster": f"{namespace}/{name}",
        "commonName": common_name or f"{name}-client",
        "notAfter": ends,
        "ca": str(directory / "ca.crt"),
        "cert": str(directory / "tls.crt"),
        "key": str(directory / "tls.key"),
    }
    if emit(info, output):
        return
    console.print(table(["FIELD", "VALUE"], list(info.items())))
    files = f"ca='{info['ca']}', certfile='{info['cert']}', keyfile='{info['key']}'"
    console.print(f"kazoo: KazooClient(hosts, use_ssl=True, {files})")
