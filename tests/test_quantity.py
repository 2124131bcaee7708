from decimal import Decimal

import pytest

from knitfab import quantity
from knitfab.errors import BadRequest


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("1", "1"),
        ("2.5", "2500m"),
        ("0.5", "500m"),
        ("500m", "500m"),
        ("1000m", "1"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("1Gi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("1024Mi", "1Gi"),
        ("0.5Ki", "512"),
        ("100M", "100M"),
        ("1e3", "1e3"),
        (2, "2"),
        ("0", "0"),
    ],
)
def test_quantities_print_as_kubernetes_does(given, canonical):
    assert quantity.canonical(given) == canonical


def test_values_are_cores_and_bytes():
    assert quantity.value("250m") == Decimal("0.25")
    assert quantity.value("1Gi") == 1 << 30


@pytest.mark.parametrize("bad", ["", "1.2.3", "1Gb", "abc", "-1", None, [1], 2.6e80, "1e30", "9999999Ei"])
def test_bad_quantities_are_refused(bad):
    with pytest.raises(BadRequest):
        quantity.canonical(bad)


@pytest.mark.parametrize(
    "resource, amount, text",
    [
        ("memory", 1073741824000, "1000Gi"),
        ("memory", 25275990016, "23.5Gi"),
        ("memory", 1 << 30, "1Gi"),
        ("memory", 512, "512"),
        ("ephemeral-storage", 3 << 40, "3Ti"),
        ("cpu", Decimal("0.5"), "500m"),
        ("cpu", 2, "2"),
        ("nvidia.com/gpu", 0, "0"),
    ],
)
def test_messages_show_quantities_as_people_write_them(resource, amount, text):
    assert quantity.readable(resource, Decimal(amount)) == text
