"""One exception hierarchy for the whole server.

Every error a user can cause is a ``KnitfabError`` carrying its HTTP status, a *reason* (the
short words Knitfab sends, typos included, because scripts match on them) and an optional
*advice* that says what to do. The HTTP layer turns them into Knitfab's wire shape
``{"message": "<reason>\\n<advice>"}`` in one place.
"""

from __future__ import annotations


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


class SchemaTooNew(KnitfabError):
    """The database was written by a newer Knitfab; refusing protects it."""

    reason = "database schema is newer than this knitfab"


class ConfigurationError(KnitfabError):
    """A setup the server refuses to start with; the advice says what to change."""

    reason = "knitfab cannot start so"
