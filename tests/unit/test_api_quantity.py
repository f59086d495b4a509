"""Kubernetes-style quantities: parsing, numeric values, round trip, refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from zkop.api import Quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("2", Decimal(2)),
        ("200Mi", Decimal(200 * 1024**2)),
        ("1Gi", Decimal(1024**3)),
        ("1G", Decimal(10**9)),
        ("500k", Decimal(500_000)),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(1536 * 1024**2)),
        ("1Ti", Decimal(1024**4)),
        ("2M", Decimal(2_000_000)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2.5e-3", Decimal("0.0025")),
        ("250u", Decimal("0.00025")),
        ("10n", Decimal("0.00000001")),
        (".5", Decimal("0.5")),
        ("0", Decimal(0)),
        ("+3", Decimal(3)),
    ],
)
def test_quantity_values(text: str, value: Decimal) -> None:
    q = Quantity(text)
    assert q.value == value
    assert q.original == text
    assert str(q) == text


def test_cpu_and_memory_views() -> None:
    assert Quantity("100m").cores == pytest.approx(0.1)
    assert Quantity("2").cores == 2.0
    assert Quantity("100m").millis == 100
    assert Quantity("0.5").millis == 500
    assert Quantity("200Mi").bytes == 200 * 1024 * 1024
    assert Quantity("1G").bytes == 1_000_000_000
    assert Quantity("500k").bytes == 500_000
    assert Quantity("1500m").bytes == 2  # fractional bytes round up


def test_numbers_are_accepted_and_keep_their_text() -> None:
    assert Quantity(2).original == "2"
    assert Quantity(0.5).original == "0.5"
    assert Quantity(0.5).cores == 0.5


def test_comparison_is_by_value() -> None:
    assert Quantity("1Gi") == Quantity("1024Mi")
    assert Quantity("1G") < Quantity("1Gi")
    assert Quantity("500m") <= Quantity("0.5")
    assert hash(Quantity("1Ki")) == hash(Quantity("1024"))
    assert Quantity("1") != "1"
    assert sorted([Quantity("2"), Quantity("100m"), Quantity("1")]) == [
        Quantity("100m"),
        Quantity("1"),
        Quantity("2"),
    ]


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1KB", "1K", "1gi", "-1", "-100m", "1.2.3", "Mi", "1 Gi ", "1e", "1x", "1e1234", "9" * 80],
)
def test_invalid_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"quantity|negative|large|suffix"):
        Quantity(text)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), True])
def test_invalid_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        Quantity(value)


def test_too_large_is_refused() -> None:
    with pytest.raises(ValueError, match="too large"):
        Quantity("100Ei")
