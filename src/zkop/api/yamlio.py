"""Multi-document YAML in and out."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode
from yaml.reader import ReaderError

from zkop.api.errors import InvalidYamlError, ResourceValidationError
from zkop.api.meta import Resource
from zkop.api.parsing import parse_object, to_dict

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that double-quotes strings holding U+0085 (PyYAML would write it raw in
    plain style, where YAML reads it back as a line break)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if "\x85" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def read_documents(text: str, *, source: str = "") -> list[tuple[int, int, Any]]:
    """Parse YAML text into ``(document index (1-based), first line, data)`` triples.

    Empty documents are skipped (their index is still counted). Raises
    :class:`InvalidYamlError` with line and column on a syntax error.
    """
    docs: list[tuple[int, int, Any]] = []
    index = 0
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:  # pragma: no cover - check_node() said there is one
                continue
            data = loader.construct_document(node)
            if data is None:
                continue
            docs.append((index, node.start_mark.line + 1, data))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        raise InvalidYamlError(
            problem,
            source=source,
            line=mark.line + 1 if mark else 0,
            column=mark.column + 1 if mark else 0,
        ) from None
    except ReaderError as exc:
        position = exc.position if isinstance(exc.position, int) else 0
        before = text[:position]
        line = before.count("\n") + 1
        column = position - (before.rfind("\n") + 1) + 1
        char = exc.character
        what = f"character U+{char:04X}" if isinstance(char, int) else "a special character"
        raise InvalidYamlError(f"{what} is not allowed in YAML", source=source, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise InvalidYamlError(str(exc).replace("\n", " "), source=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def load_yaml(text: str, *, source: str = "") -> list[Resource]:
    """Parse every document of a YAML stream into typed resources.

    Empty documents are skipped. Problems of all documents are reported together in one
    :class:`ResourceValidationError` (each naming its document index and ``source``);
    a syntax error raises :class:`InvalidYamlError` with line and column.
    """
    resources: list[Resource] = []
    errors: list[ResourceValidationError] = []
    for index, line, data in read_documents(text, source=source):
        try:
            resources.append(parse_object(data, source=source, document=index))
        except ResourceValidationError as exc:
            errors.append(
                ResourceValidationError(
                    exc.problems,
                    source=source,
                    document=index,
                    line=line,
                    kind=exc.kind,
                    name=exc.name,
                )
            )
    if errors:
        raise ResourceValidationError.combine(errors)
    return resources


def dump_yaml(obj: Resource | Sequence[Resource]) -> str:
    """YAML text for one resource, or a multi-document stream for several."""
    objs = [obj] if isinstance(obj, Resource) else list(obj)
    return "---\n".join(
        yaml.dump(to_dict(o), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
        for o in objs
    )
