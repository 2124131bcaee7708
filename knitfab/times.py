"""Timestamps and durations in Knitfab's formats.

Instants are kept as integer microseconds since the epoch (UTC) everywhere inside the server;
the clock is read at millisecond precision so that a printed timestamp, fed back as a
``knit#timestamp`` tag or a ``since`` query, denotes exactly the stored instant.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime, timedelta, timezone

from knit import timefmt

from .errors import BadRequest

MAX_DURATION_US = (2**63 - 1) // 1000  # Go's time.Duration is int64 nanoseconds
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+\- ]\d{2}:\d{2})$")


def now_us() -> int:
    """The current instant, truncated to milliseconds (see the module docstring)."""
    return int(time.time() * 1000) * 1000


def format_ts(us: int, tz: timezone | None = UTC) -> str:
    """Go's ``2006-01-02T15:04:05.999-07:00``: trimmed milliseconds, numeric offset."""
    seconds, micros = divmod(us, 1_000_000)
    fraction = _FRACTIONS[micros // 1000]
    if tz is UTC:  # the API's case, twice per DataDetail: kept cheap (a table and a cache)
        return f"{_utc_seconds(seconds)}{fraction}+00:00"
    dt = datetime.fromtimestamp(seconds, tz)
    offset = dt.strftime("%z")
    return f"{dt.strftime('%Y-%m-%dT%H:%M:%S')}{fraction}{offset[:3]}:{offset[3:]}"


# ".705", ".7", "" (Go's .999 trims trailing zeros) for each millisecond
_FRACTIONS = [""] + ["." + f"{millis:03d}".rstrip("0") for millis in range(1, 1000)]


@functools.lru_cache(maxsize=4096)
def _utc_seconds(seconds: int) -> str:
    # Cached: the Data and runs of one answer mostly share their seconds (a batch, a pipeline).
    y, mo, d, h, mi, s = time.gmtime(seconds)[:6]
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"


def parse_rfc3339(text: str) -> int:
    """Strict RFC 3339 (fraction optional, ``Z`` allowed) to microseconds since the epoch."""
    # An unescaped "+" in a query string arrives as a space: read it as the "+" it was.
    m = _RFC3339.match(text.strip(" \t\n"))
    if not m:
        raise BadRequest(f"not a RFC3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        tz = UTC if zone in ("Z", "z") else _offset(zone)
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError as e:
        raise BadRequest(f"not a RFC3339 timestamp: {text[:64]!r} ({e})") from None
    micros = int((frac or "0").ljust(6, "0")[:6])
    return int(dt.timestamp()) * 1_000_000 + micros


def _offset(zone: str) -> timezone:
    sign = -1 if zone[0] == "-" else 1
    if int(zone[4:6]) > 59:
        raise ValueError("offset minutes must be 0..59")
    return timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` syntax (``300ms``, ``1.5h``, ``2h45m``) to microseconds,
    within Go's range (an int64 of nanoseconds, about 292 years)."""
    try:
        us = round(timefmt.parse_duration(text) * 1_000_000)
    except OverflowError:
        us = MAX_DURATION_US + 1
    except ValueError as e:
        raise BadRequest(str(e)) from None
    if abs(us) > MAX_DURATION_US:
        raise BadRequest(f"duration is out of range (at most {MAX_DURATION_US // 3_600_000_000}h): {text[:40]!r}")
    return us
