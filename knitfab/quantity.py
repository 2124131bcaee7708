"""Kubernetes resource quantities (``1``, ``500m``, ``1Gi``, ``2.5``) in canonical form.

Knitfab stores plan resources as ``resource.Quantity`` and prints their canonical string, so
``2.5`` cpu comes back as ``2500m`` and ``1.5Gi`` as ``1536Mi``. This follows the Go library's
``CanonicalizeBytes``: binary suffixes stay binary when the value is a whole number of at least
1024, otherwise the value is written as an integer mantissa with an SI (or ``e``) exponent that
is a multiple of three.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

from .errors import BadRequest

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_SI_SUFFIX = {exp: suffix for suffix, exp in _DECIMAL.items()}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_NANO = Decimal("1e-9")


def parse(text: object) -> tuple[Decimal, str]:
    """The exact value and the suffix family (``binary``, ``decimal`` or ``exponent``)."""
    m = _QUANTITY.match(str(text).strip()) if isinstance(text, (str, int, float)) else None
    if not m:
        raise BadRequest(f"quantities must match the regular expression {_QUANTITY.pattern}: {text!r}")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    if suffix in _BINARY:
        value, family = number * 1024 ** _BINARY[suffix], "binary"
    elif suffix[:1] in ("e", "E"):
        value, family = number.scaleb(int(suffix[1:])), "exponent"
    else:
        value, family = number.scaleb(_DECIMAL[suffix]), "decimal"
    if value.adjusted() > 18:  # beyond Kubernetes' int64 quantities (and Decimal's precision)
        raise BadRequest(f"quantity is too large: {text!r}")
    # Quantities keep nine decimal places at most and round up, like the Go library.
    return value.quantize(_NANO, rounding=ROUND_CEILING) if value % _NANO else value, family


def value(text: object) -> Decimal:
    """Cores for cpu, bytes for memory: the number a quantity stands for."""
    return parse(text)[0]


def canonical(text: object) -> str:
    """The canonical string Knitfab prints for a quantity; negative quantities are refused."""
    amount, family = parse(text)
    if amount < 0:
        raise BadRequest(f"quantity must not be negative: {text!r}")
    if family == "binary" and amount >= 1024 and amount == amount.to_integral_value():
        return _binary(int(amount))
    return _decimal(amount, family)


def _binary(amount: int) -> str:
    exp = 0
    while amount % 1024 == 0 and exp < 6:
        amount, exp = amount // 1024, exp + 1
    suffix = {v: k for k, v in _BINARY.items()}.get(exp, "")
    return f"{amount}{suffix}"


def _decimal(amount: Decimal, family: str) -> str:
    if amount == 0:
        return "0"
    sign, digits, exp = amount.normalize().as_tuple()
    mantissa = int("".join(map(str, digits)))
    shift = exp % 3  # bring the exponent down to a multiple of three
    mantissa, exp = mantissa * 10**shift, exp - shift
    if family == "exponent":
        return f"{mantissa}e{exp}" if exp else str(mantissa)
    if exp > 18:
        mantissa, exp = mantissa * 10 ** (exp - 18), 18
    return f"{mantissa}{_SI_SUFFIX[exp]}"


# Resources counted in bytes; the rest (cpu, GPUs, ...) are counts.
BYTE_RESOURCES = frozenset({"memory", "ephemeral-storage", "storage"})


def readable(resource: str, amount: Decimal) -> str:
    """A quantity as people write it, for messages: bytes with the largest binary suffix that
    leaves at least 1 and one decimal at most (``1000Gi``, ``23.5Gi``), counts canonically
    (``2``, ``500m``). Approximate where a decimal is dropped: never parse it back."""
    if resource not in BYTE_RESOURCES and not resource.startswith("hugepages-"):
        return canonical(str(amount))
    exp = 0
    while exp < 6 and abs(amount) >= 1024 ** (exp + 1):
        exp += 1
    scaled = (amount / 1024**exp).quantize(Decimal("0.1"))
    number = f"{scaled:f}".removesuffix(".0")
    return number + {v: k for k, v in _BINARY.items()}.get(exp, "")
