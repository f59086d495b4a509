"""Errors raised by `zkop.api`: every refusal names the field path, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from zkop.errors import ValidationError

#: One element of a location inside a document: a field or map key (str) or a list index (int).
LocItem = str | int


class Problem(NamedTuple):
    """One thing wrong with a document: where (a field path such as
    ``spec.template.ports[0].containerPort``) and what (value and what is allowed)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ResourceValidationError(ValidationError):
    """A resource document was refused. Carries every problem found in it.

    ``problems`` lists ``(path, message)`` pairs. When several documents of one YAML
    stream are refused together, ``documents`` holds one error per refused document and
    ``problems`` is their concatenation.
    """

    def __init__(
        self,
        problems: Sequence[Problem],
        *,
        source: str = "",
        document: int | None = None,
        line: int | None = None,
        kind: str | None = None,
        name: str | None = None,
        documents: Sequence[ResourceValidationError] = (),
    ) -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        self.document = document
        self.line = line
        self.kind = kind
        self.name = name
        self.documents: list[ResourceValidationError] = list(documents)
        super().__init__(self._render())

    @classmethod
    def combine(cls, errors: Sequence[ResourceValidationError]) -> ResourceValidationError:
        """One error for several refused documents (or the error itself when there is one)."""
        if len(errors) == 1:
            return errors[0]
        problems = [p for err in errors for p in err.problems]
        source = errors[0].source if errors else ""
        return cls(problems, source=source, documents=errors)

    def where(self) -> str:
        """The refused object, e.g. ``ZookeeperCluster "a" (f.yaml, document 2, line 14)``."""
        what = self.kind or "resource"
        if self.name:
            what += f' "{self.name}"'
        place = [p for p in (self.source, _doc(self.document)) if p]
        if self.line is not None:
            place.append(f"line {self.line}")
        if place:
            what += f" ({', '.join(place)})"
        return what

    def _render(self) -> str:
        if self.documents:
            head = f"{len(self.documents)} documents refused"
            if self.source:
                head += f" in {self.source}"
            return head + ":\n" + "\n".join(err.message for err in self.documents)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"invalid {self.where()}: {count} {noun}"]
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)


class InvalidYamlError(ValidationError):
    """The text is not valid YAML. ``line`` and ``column`` are 1-based (0 when unknown)."""

    def __init__(self, problem: str, *, source: str = "", line: int = 0, column: int = 0) -> None:
        self.problem = problem
        self.source = source
        self.line = line
        self.column = column
        where = source or "<input>"
        if line:
            where += f", line {line}, column {column}"
        super().__init__(f"invalid YAML ({where}): {problem}", hint="fix the YAML syntax at that position")


class FieldProblems(ValueError):
    """Raised inside model validators to report problems at paths *below* the model
    being validated (for example ``requests.cpu`` inside ``spec.resources``).

    ``zkop.api`` turns it into :class:`Problem` items with the full path; it never
    reaches a user as it is.
    """

    def __init__(self, items: Iterable[tuple[tuple[LocItem, ...], str]]) -> None:
        self.items: list[tuple[tuple[LocItem, ...], str]] = list(items)
        super().__init__("; ".join(f"{format_path(loc)}: {msg}" for loc, msg in self.items))


def _doc(index: int | None) -> str:
    return "" if index is None else f"document {index}"


def _plain_key(key: str) -> bool:
    if not key or not (key[0].isalpha() or key[0] == "_"):
        return False
    return all(c.isalnum() or c in "_-" for c in key) and key.isascii()


def format_path(loc: Iterable[LocItem]) -> str:
    """Render a location as a path: ``spec.template.ports[0].name``; map keys that are not
    plain words are quoted: ``spec.config.additionalConfig["4lw.commands.whitelist"]``."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif _plain_key(item):
            out += f".{item}" if out else item
        else:
            escaped = item.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out
