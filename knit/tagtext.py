"""``KEY:VALUE`` tag text: the one parser of it, for the CLI, the client and the server.

Dependency-free (the server imports it: see ``knit/__init__``). A tag is split at its first
colon and both sides are trimmed, as Knitfab does; ``knit#`` starts a system tag's key.
"""

from __future__ import annotations

SYSTEM_PREFIX = "knit#"


def split_tag(text: str) -> tuple[str, str] | None:
    """(key, value) of ``KEY:VALUE``, split at the first colon and trimmed; None without a colon."""
    key, sep, value = text.partition(":")
    return (key.strip(), value.strip()) if sep else None


def is_system_key(key: str) -> bool:
    return key.strip().startswith(SYSTEM_PREFIX)
