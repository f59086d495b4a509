"""``zkop kube``: zkop on Kubernetes. ``zkop kube crds`` prints (or writes) the
CustomResourceDefinitions of zkop's kinds, generated from the models (:mod:`zkop.api.crd`)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer

from zkop.api import crd
from zkop.errors import ZkopError

app = typer.Typer(help="zkop on Kubernetes: the CustomResourceDefinitions of its kinds.", no_args_is_help=True)


class CrdFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def write_files(directory: Path) -> list[Path]:
    """Write one file per kind (``zookeeperclusters.zkop.io.yaml``, ...) into ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for definition in crd.crds():
            path = directory / crd.file_name(definition)
            path.write_text(crd.to_file(definition), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise ZkopError(f"cannot write the CRDs into {directory}: {exc.strerror or exc}") from None
    return written


@app.command("crds")
def crds(
    output: CrdFormat = typer.Option(
        CrdFormat.yaml, "--output", "-o", help="yaml (one document per CRD) or json (a v1 List)."
    ),
    write: Path | None = typer.Option(
        None,
        "--write",
        metavar="DIR",
        help="Write one YAML file per kind into DIR (e.g. deploy/crds) instead of printing.",
    ),
) -> None:
    """Print the CustomResourceDefinitions of zkop's kinds, generated from its models (for kubectl apply -f -)."""
    if write is not None:
        for path in write_files(write):
            sys.stdout.write(f"wrote {path}\n")
        return
    definitions = crd.crds()
    if output is CrdFormat.json:
        listing = {"apiVersion": "v1", "kind": "List", "items": definitions}
        sys.stdout.write(json.dumps(listing, indent=2) + "\n")
    else:
        sys.stdout.write(crd.stream(definitions))
