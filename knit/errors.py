"""What a failed call of ``KnitClient`` says: ``KnitError``, its summary in Knitfab's words by
HTTP status (spec §7.4), and the server's own message underneath."""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable


class KnitError(Exception):
    """A call that failed: ``summary`` says what could not be done, ``detail`` is the server's
    message (when it sent one), ``status`` the HTTP status (None when it could not be reached)."""

    def __init__(self, summary: str, status: int | None = None, detail: str = ""):
        self.summary, self.status, self.detail = summary, status, detail
        super().__init__(f"{summary}\n{detail}" if detail else summary)


def server_message(payload: bytes) -> str:
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace").strip()
    message = doc.get("message") if isinstance(doc, dict) else None
    if isinstance(message, dict):  # the typed shape Knitfab declares: {"reason", "advice", "see"}
        message = "\n".join(str(v) for v in message.values())
    return str(message) if message is not None else payload.decode(errors="replace").strip()


def summary_for(missing: str, other: str | None = None) -> Callable[[int], str]:
    def summary(status: int) -> str:
        if status == 404:
            return missing
        if status >= 500:
            return f"server error (status code = {status})"
        return other or missing

    return summary


def summary_by_status(rejected: str) -> Callable[[int], str]:
    def summary(status: int) -> str:
        if status >= 500:
            return f"server error (status code = {status})"
        return rejected if rejected == "invalid request" else f"{rejected} (status code = {status})"

    return summary


def find_failed(status: int) -> str:
    if status >= 500:
        return f"server error (status code = {status})"
    return f"[BUG] client is not compatible with the server (status code = {status})"
