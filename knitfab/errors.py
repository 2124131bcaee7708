"""One exception hierarchy for the whole server.

Every error a user can cause is a ``KnitfabError`` carrying its HTTP status, a *reason* (the
short words Knitfab sends, typos included, because scripts match on them) and an optional
*advice* that says what to do. The HTTP layer turns them into Knitfab's wire shape
``{"message": "<reason>\\n<advice>"}`` in one place.
"""

from __future__ import annotations

import errno


class KnitfabError(Exception):
    status = 500
    reason = "unexpected error"

    def __init__(self, advice: str = "", reason: str | None = None):
        self.advice = advice
        if reason is not None:
            self.reason = reason
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.reason}\n{self.advice}" if self.advice else self.reason


class BadRequest(KnitfabError):
    status = 400
    reason = "bad request"


class Unauthorized(KnitfabError):
    status = 401
    reason = "invalid token"


class NotFound(KnitfabError):
    status = 404
    reason = "not found"


class Conflict(KnitfabError):
    status = 409
    reason = "conflict"


class InvalidTransition(Conflict):
    """A run status change that §6.3's table does not allow."""

    reason = "prohibited operation"


class ServiceUnavailable(KnitfabError):
    status = 503
    reason = "service unavailable temporaly"


class BadGateway(KnitfabError):
    """An extra API upstream (extraapi.py) that cannot be reached."""

    status = 502
    reason = "bad gateway"


class SchemaTooNew(KnitfabError):
    """The database was written by a newer Knitfab; refusing protects it."""

    reason = "database schema is newer than this knitfab"


class InsufficientStorage(KnitfabError):
    """The data volume (or the database on it) is full: nothing was stored; reads still work."""

    status = 507
    reason = "insufficient storage"


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL = 5, 6, 13
SQLITE_FULL_MESSAGE = "database or disk is full"  # sqlite3_errstr(SQLITE_FULL)


def sqlite_code(e: BaseException) -> int | None:
    """SQLite's primary result code of ``e``, anywhere in its chain (peewee raises its own
    exception while handling sqlite3's, which carries the code); None when it is not SQLite's."""
    seen: list[BaseException] = []
    while isinstance(e, BaseException) and e not in seen:
        seen.append(e)
        code = getattr(e, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF  # an extended code (SQLITE_BUSY_SNAPSHOT...) keeps its primary in the low byte
        e = e.__cause__ or e.__context__ or (e.args[0] if e.args else None)
    return None


def disk_full(e: BaseException) -> InsufficientStorage | None:
    """The one place that recognises a full disk: ``OSError`` ENOSPC/EDQUOT, or SQLite's
    SQLITE_FULL (as sqlite3 or peewee raise it), anywhere in the chain of ``e``."""
    seen: list[BaseException] = []
    while isinstance(e, BaseException) and e not in seen:
        seen.append(e)
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return InsufficientStorage(f"the data volume is full ({e.strerror}): free some space and retry")
        # peewee drops sqlite3's exception (and its code) when the full disk also fails the
        # rollback; then only SQLite's fixed message for SQLITE_FULL is left to recognise it by.
        if getattr(e, "sqlite_errorcode", -1) & 0xFF == SQLITE_FULL or str(e) == SQLITE_FULL_MESSAGE:
            return InsufficientStorage("the database's disk is full: free some space and retry")
        e = e.__cause__ or e.__context__ or (e.args[0] if e.args else None)
    return None


class PayloadTooLarge(KnitfabError):
    """A Data larger than the operator allows (``--max-data-size``)."""

    status = 413
    reason = "payload too large"


class ConfigurationError(KnitfabError):
    """A setup the server refuses to start with; the advice says what to change."""

    reason = "knitfab cannot start so"
