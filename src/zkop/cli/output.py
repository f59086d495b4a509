"""Shared output helpers: one console, tables, and -o yaml|json."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Output(StrEnum):
    table = "table"
    wide = "wide"
    yaml = "yaml"
    json = "json"


def emit(data: Any, output: Output) -> bool:
    """Print ``data`` as yaml/json and return True, or return False for table output."""
    if output is Output.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        return True
    if output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        return True
    return False


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> Table:
    t = Table(title=title, header_style="bold", box=None, pad_edge=False)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("-" if v is None or v == "" else str(v) for v in row))
    return t


def out(text: str) -> None:
    """Plain text on stdout, as it is (no markup, no wrapping)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def fail(message: str) -> None:
    """``error: message`` on stderr."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def warn(message: str) -> None:
    """``warning: message`` on stderr."""
    err_console.print(f"[yellow]warning: {escape(message)}[/]", soft_wrap=True)
