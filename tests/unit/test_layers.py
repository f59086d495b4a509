"""The layers, as imports. Every module of the package is parsed (imports inside functions
and under TYPE_CHECKING count too), and a layer may import nothing from the layers above it:

    api, zk                 the ground: no client, store, coord, runtime, controllers, platform, cli
    client, coord, store    low: no runtime, controllers, platform, cli, discovery;
                            coord may use client, store may use client and api, neither the other
    controllers             of the platforms, only the contract (platform.base)
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import zkop

PACKAGE = Path(zkop.__file__).parent

ABOVE_LOW = ("zkop.runtime", "zkop.controllers", "zkop.platform", "zkop.cli", "zkop.discovery")
ABOVE_GROUND = ("zkop.client", "zkop.store", "zkop.coord", "zkop.runtime", "zkop.controllers", "zkop.platform")
RULES: dict[str, tuple[str, ...]] = {
    "zkop.client": (*ABOVE_LOW, "zkop.coord", "zkop.store"),
    "zkop.coord": (*ABOVE_LOW, "zkop.store"),
    "zkop.store": (*ABOVE_LOW, "zkop.coord"),
    "zkop.api": (*ABOVE_GROUND, "zkop.cli"),
    "zkop.zk": (*ABOVE_GROUND, "zkop.cli"),
}


def module_name(path: Path) -> str:
    parts = ["zkop", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_in(source: str, package: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``source``, wherever it stands; relative
    imports are resolved against ``package``."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, node.lineno))
            # ``from zkop import platform``: the names may be modules themselves.
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


@cache
def imports_of(module: str) -> tuple[tuple[str, int], ...]:
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return tuple(imports_in(path.read_text(encoding="utf-8"), package))


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def breaches(layer: str, forbidden: tuple[str, ...], *, allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for module in modules():
        if not within(module, layer):
            continue
        for name, line in imports_of(module):
            if any(within(name, f) for f in forbidden) and not any(within(name, a) for a in allowed):
                out.append(f"{module}:{line} imports {name}")
    return sorted(set(out))


def test_the_package_is_found() -> None:
    assert {"zkop.client.connect", "zkop.store.store", "zkop.coord.election", "zkop.api", "zkop.zk.quorum"} <= set(
        modules()
    )


@pytest.mark.parametrize("layer", sorted(RULES))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    assert breaches(layer, RULES[layer]) == []


def test_controllers_know_only_the_platform_contract() -> None:
    assert breaches("zkop.controllers", ("zkop.platform",), allowed=("zkop.platform.base",)) == []


def test_every_kind_of_import_is_seen() -> None:
    source = """
import zkop.runtime.manager
from zkop import platform
from ..cli import main
def later():
    from zkop.discovery.registry import encode
class Lazy:
    def method(self):
        import zkop.controllers
"""
    names = {name for name, _ in imports_in(source, "zkop.store")}
    assert {
        "zkop.runtime.manager",
        "zkop.platform",
        "zkop.cli.main",
        "zkop.discovery.registry",
        "zkop.controllers",
    } <= names
