"""Tags: ``key:value`` pairs, the system tags, and normalized tag sets (spec §1.1)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from knit.tagtext import SYSTEM_PREFIX, split_tag

from .errors import BadRequest
from .times import format_ts, parse_rfc3339

KEY_ID = "knit#id"
KEY_TIMESTAMP = "knit#timestamp"
KEY_TRANSIENT = "knit#transient"
TRANSIENT_PROCESSING = "processing"
TRANSIENT_FAILED = "failed"

MAX_KEY = 1024
MAX_VALUE = 1 << 20
# C0 controls (NUL, newline, ...), DEL and C1 controls: no tag needs them, and they break
# paths, logs and terminals.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class Tag(NamedTuple):
    """A tag. As a tuple it sorts by key then value, in code point order, which is the byte
    order of UTF-8 that Knitfab sorts by."""

    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}:{self.value}"

    @property
    def is_system(self) -> bool:
        return self.key.startswith(SYSTEM_PREFIX)


def parse_tag(text: str) -> Tag:
    """``KEY:VALUE``, split at the first colon, both sides trimmed."""
    parts = split_tag(text) if isinstance(text, str) else None
    if parts is None:
        raise BadRequest("each tag should be formatted as KEY:VALUE", reason=f"tag parse error: {text} :no key")
    return checked(Tag(*parts))


def tag_from_json(obj: object) -> Tag:
    """A tag in a request body: ``"k:v"`` or ``{"key": "k", "value": "v"}``."""
    if isinstance(obj, str):
        return parse_tag(obj)
    if isinstance(obj, dict) and set(obj) == {"key", "value"}:
        key, value = obj["key"], obj["value"]
        if isinstance(key, str) and isinstance(value, str):
            return checked(Tag(key.strip(), value.strip()))
    raise BadRequest(f'a tag must be "key:value" or {{"key": ..., "value": ...}}: {shown(repr(obj))}')


def checked(tag: Tag) -> Tag:
    """Reject tags no store could hold; system tags get their values validated."""
    if not tag.key:
        raise BadRequest(f"tag key is empty: {shown(str(tag))}")
    if len(tag.key) > MAX_KEY or len(tag.value) > MAX_VALUE:
        raise BadRequest(f"tag is too long (key ≤ {MAX_KEY} chars, value ≤ 1 MiB): {shown(tag.key)}")
    if has_control(tag.key) or has_control(tag.value):
        raise BadRequest(f"tag has control characters (NUL, newline, ...): {shown(str(tag))}")
    if tag.key == KEY_TIMESTAMP:
        parse_rfc3339(tag.value)
    if tag.key == KEY_TRANSIENT and tag.value not in (TRANSIENT_PROCESSING, TRANSIENT_FAILED):
        raise BadRequest(f"knit#transient must be processing or failed: {tag}")
    return tag


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def shown(text: str, limit: int = 64) -> str:
    """``text`` as an error message may quote it: short, with control characters escaped."""
    quoted = repr(text[:limit])[1:-1]
    return quoted + "..." if len(text) > limit else quoted


def user_tag(tag: Tag) -> Tag:
    """A tag a user may add or remove: anything but the reserved ``knit#`` keys."""
    if tag.is_system:
        raise BadRequest(f"system tag cannot be changed: {tag}", reason="format error")
    return tag


def normalize(tags: Iterable[Tag]) -> list[Tag]:
    """De-duplicated (timestamps by instant) and sorted by key then value, as Knitfab emits."""
    unique = {}
    for tag in tags:
        if tag.key == KEY_TIMESTAMP:
            tag = Tag(tag.key, format_ts(parse_rfc3339(tag.value)))
        unique[tag] = tag
    return sorted(unique.values())


def as_strings(tags: Iterable[Tag]) -> list[str]:
    """Tags as Knitfab prints them, sorted. For tags read from the store, which are unique and
    canonical already (``normalize`` is for what users send)."""
    return [f"{key}:{value}" for key, value in sorted(set(tags))]


def system_tags(knit_id: str, timestamp_us: int | None, transient: str | None) -> list[Tag]:
    """The system tags of a Data, given its id, timestamp and producing run's state."""
    # tuple.__new__ skips NamedTuple's Python-level __new__: a fifth of the cost, on every Data
    tags = [_new(Tag, (KEY_ID, knit_id))]
    if timestamp_us is not None:
        tags.append(_new(Tag, (KEY_TIMESTAMP, format_ts(timestamp_us))))
    if transient:
        tags.append(_new(Tag, (KEY_TRANSIENT, transient)))
    return tags


_new = tuple.__new__
