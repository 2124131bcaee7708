"""Optional paging of the list endpoints: ``?limit=N&offset=M&order=desc`` (an extension).

Knitfab's clients never send these, and without them every list answers exactly as before.
``order=desc`` reverses the list's own order (newest first); ``offset`` skips that many items
of the (possibly reversed) list and ``limit`` keeps at most that many of the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import BadRequest

MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Page:
    limit: int | None = None
    offset: int = 0
    desc: bool = False

    def take(self, items: Sequence) -> list:
        """This page of a whole list in its natural order."""
        ordered = list(reversed(items)) if self.desc else list(items)
        end = None if self.limit is None else self.offset + self.limit
        return ordered[self.offset : end]

    def sql(self) -> tuple[str, list[int]]:
        """The ``LIMIT ? OFFSET ?`` clause (SQLite wants a LIMIT before an OFFSET; -1 is none)."""
        if self.limit is None and not self.offset:
            return "", []
        return " LIMIT ? OFFSET ?", [-1 if self.limit is None else self.limit, self.offset]


WHOLE = Page()


def parse_page(args: Mapping[str, str]) -> Page:
    """The page a query asks for; a 400 for what is not a count or ``asc``/``desc``."""
    order = args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")
    limit = _count(args, "limit", 1, MAX_LIMIT)
    return Page(limit, _count(args, "offset", 0, 1 << 62) or 0, order == "desc")


def _count(args: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = args.get(name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return int(text)
