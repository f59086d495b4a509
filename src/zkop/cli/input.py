"""Input of ``zkop apply`` and ``zkop delete -f``: files, directories of them or stdin, each
document validated (``zkop.api``) before anything is sent, all refused if one is invalid."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zkop.api import InvalidYamlError, Resource, ResourceValidationError, load_yaml
from zkop.errors import Refused, ValidationError, ZkopError


@dataclass(frozen=True)
class Source:
    """The text of one input file (or stdin) and the name it is reported under."""

    name: str
    text: str


def _read_file(path: Path) -> Source:
    try:
        return Source(str(path), path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(f"{path}: no such file or directory") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path}: not UTF-8 text", hint="resource files are YAML") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_sources(files: Sequence[str]) -> list[Source]:
    """Each ``-f`` value: a file, a directory (its ``*.yaml``/``*.yml``, sorted) or ``-`` (stdin)."""
    if not files:
        raise ValidationError("no input", hint="pass -f FILE, -f DIR or -f - (stdin)")
    sources: list[Source] = []
    for item in files:
        if item == "-":
            sources.append(Source("<stdin>", sys.stdin.read()))
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")), key=lambda p: p.name
            )
            if not found:
                raise ValidationError(f"{path}: no *.yaml or *.yml files in this directory")
            sources.extend(_read_file(p) for p in found)
        else:
            sources.append(_read_file(path))
    return sources


def parse_sources(sources: Sequence[Source], *, what: str = "applied") -> list[Resource]:
    """Validate every document of every source; refuse all of them if any is invalid."""
    objects: list[Resource] = []
    errors: list[ZkopError] = []
    for src in sources:
        try:
            objects.extend(load_yaml(src.text, source=src.name))
        except (InvalidYamlError, ResourceValidationError) as exc:
            errors.append(exc)
    if errors:
        raise Refused(errors, what=what)
    if not objects:
        names = ", ".join(s.name for s in sources)
        raise ValidationError(f"no objects in {names}", hint="each YAML document needs apiVersion, kind, metadata")
    return objects


__all__ = ["Source", "parse_sources", "read_sources"]
