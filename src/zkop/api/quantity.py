"""Kubernetes-style quantities: ``100m``, ``0.5``, ``2``, ``200Mi``, ``1Gi``, ``1G``, ``500k``, ``1e3``.

A :class:`Quantity` keeps the text it was written as (so documents round-trip unchanged)
and exposes its numeric value: :attr:`Quantity.cores` for CPU, :attr:`Quantity.bytes`
for memory. Quantities compare by value (``Quantity("1Gi") == Quantity("1024Mi")``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation, localcontext
from functools import lru_cache, total_ordering
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
SUFFIXES: tuple[str, ...] = ("m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")

_PATTERN = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exponent>[eE][+-]?[0-9]{1,3})|(?P<suffix>[a-zA-Z]{0,2}))$"
)
#: Regular expression for JSON Schema / CRDs (same language as the parser accepts).
PATTERN_TEXT = (
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
    r"([eE][+-]?[0-9]{1,3}|n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
_MAX_TEXT = 64
#: The largest value accepted (Kubernetes stores quantities in 64 bits).
MAX_VALUE = Decimal(2**63 - 1)

ALLOWED = (
    "a non-negative number with an optional suffix: m (milli), k, M, G, T, P, E (powers of 10), "
    "Ki, Mi, Gi, Ti, Pi, Ei (powers of 2) or an exponent like e3; "
    "e.g. 100m, 0.5, 2, 200Mi, 1Gi, 1G, 500k"
)


@total_ordering
class Quantity:
    """A parsed quantity. Construct from text (``Quantity("200Mi")``) or a number."""

    __slots__ = ("_text", "_value")

    def __init__(self, value: str | int | float | Quantity) -> None:
        if isinstance(value, Quantity):
            self._text: str = value._text
            self._value: Decimal = value._value
            return
        self._text, self._value = _parse(value)

    @property
    def original(self) -> str:
        """The text as written (numbers are written the way Python prints them)."""
        return self._text

    @property
    def value(self) -> Decimal:
        """The exact value in base units (cores, bytes)."""
        return self._value

    @property
    def cores(self) -> float:
        """The value as CPU cores (``100m`` -> 0.1)."""
        return float(self._value)

    @property
    def millis(self) -> int:
        """The value in thousandths, rounded up (``0.5`` -> 500)."""
        return math.ceil(self._value * 1000)

    @property
    def bytes(self) -> int:
        """The value as a whole number of bytes, rounded up (``1Ki`` -> 1024)."""
        return math.ceil(self._value)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Quantity({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self._value == other._value
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self._value < other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    # -- pydantic integration -------------------------------------------------------
    @classmethod
    def _validate(cls, value: Any) -> Quantity:
        if isinstance(value, Quantity):
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected a quantity, got {type(value).__name__}; allowed: {ALLOWED}")
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source_type: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda q: q.original, return_schema=core_schema.str_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "maxLength": _MAX_TEXT, "pattern": PATTERN_TEXT},
            ],
            "x-kubernetes-int-or-string": True,
            "title": "Quantity",
        }


@lru_cache(maxsize=4096, typed=True)  # objects repeat a few quantities; decoding one is on every read
def _parse(value: str | int | float) -> tuple[str, Decimal]:
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity, got a boolean; allowed: {ALLOWED}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a quantity; allowed: {ALLOWED}")
    text = value.strip() if isinstance(value, str) else str(value)
    shown = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
    match = _PATTERN.match(text) if len(text) <= _MAX_TEXT else None
    if match is None:
        raise ValueError(f"{shown!r} is not a quantity; allowed: {ALLOWED}")
    suffix = match.group("suffix") or ""
    if suffix and suffix not in _BINARY and suffix not in _DECIMAL:
        raise ValueError(f"{shown!r} has an unknown suffix {suffix!r}; allowed: {ALLOWED}")
    with localcontext() as ctx:
        ctx.prec = 60
        try:
            number = Decimal(match.group("number"))
        except InvalidOperation:  # pragma: no cover - the pattern only admits decimals
            raise ValueError(f"{shown!r} is not a quantity; allowed: {ALLOWED}") from None
        exponent = match.group("exponent")
        if exponent is not None:
            amount = number.scaleb(int(exponent[1:]))
        elif suffix in _BINARY:
            amount = number * (Decimal(1024) ** _BINARY[suffix])
        else:
            amount = number.scaleb(_DECIMAL[suffix])
    if amount < 0:
        raise ValueError(f"{shown!r} is negative; allowed: {ALLOWED}")
    if amount > MAX_VALUE:
        raise ValueError(f"{shown!r} is too large; the largest quantity is {MAX_VALUE}")
    return text, amount
