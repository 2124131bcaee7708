"""Times as ``knit`` takes them: loose ``--since`` and Go durations (spec §1.2, §7.3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# YYYY-mm-dd[(T| )HH[:MM[:SS[.fff]]]][Z|±hh:mm]
_SINCE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_DURATION = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_since(text: str) -> str:
    """A loose time as RFC 3339: missing parts are zero, a missing offset is local time.
    ``2021-01-01Z``, ``2021-01-01 00Z`` and ``2021-01-01T00:00:00Z`` are the same instant."""
    m = _SINCE.match(text.strip())
    if not m:
        raise ValueError(f"cannot read {text!r} as a time: use YYYY-mm-dd[THH[:MM[:SS[.fff]]]][Z|±hh:mm]")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    naive = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    stamp = naive.astimezone() if zone is None else naive.replace(tzinfo=_zone(zone))
    return stamp.isoformat(timespec="milliseconds")


def _zone(text: str) -> timezone:
    if text == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return timezone(-offset if text[0] == "-" else offset)


def parse_duration(text: str) -> float:
    """Go's duration syntax (``300ms``, ``-1.5h``, ``2h45m``) in seconds."""
    stripped = text.strip()
    sign = -1 if stripped.startswith("-") else 1
    body = stripped.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _DURATION.findall(body)
    if not body or "".join(n + u for n, u in parts) != body or any(n in ("", ".") for n, _ in parts):
        raise ValueError(f"cannot read {text!r} as a duration: use e.g. 300ms, 1.5h, 2h45m")
    return sign * sum(float(n) * _SECONDS[u] for n, u in parts)


def go_duration(seconds: float) -> str:
    """Go's ``Duration.String()``: ``24h0m0s``, ``1m30s``, ``500ms``."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        for unit, size in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if seconds >= size:
                return f"{_trim(seconds / size)}{unit}"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{int(hours)}h{int(minutes)}m{_trim(secs)}s"
    if minutes:
        return f"{int(minutes)}m{_trim(secs)}s"
    return f"{_trim(secs)}s"


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")
