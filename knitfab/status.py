"""Run statuses and the one table of legal transitions (spec §6.3)."""

from __future__ import annotations

import enum

from .errors import BadRequest, InvalidTransition


class RunStatus(enum.StrEnum):
    DEACTIVATED = "deactivated"
    WAITING = "waiting"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETING = "completing"
    ABORTING = "aborting"
    DONE = "done"
    FAILED = "failed"
    INVALIDATED = "invalidated"

    @property
    def processing(self) -> bool:
        """Its outputs are still being made: they carry ``knit#transient:processing``."""
        return self in PROCESSING

    @property
    def finished(self) -> bool:
        return self in (RunStatus.DONE, RunStatus.FAILED, RunStatus.INVALIDATED)


S = RunStatus
PROCESSING = frozenset({S.DEACTIVATED, S.WAITING, S.READY, S.STARTING, S.RUNNING, S.COMPLETING, S.ABORTING})

# Anything not listed is refused with 409 "prohibited operation". Retry (done|failed → waiting)
# and delete (→ invalidated) are not status changes of this machine: runs.py does them apart.
ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    S.DEACTIVATED: frozenset({S.WAITING, S.ABORTING}),
    S.WAITING: frozenset({S.DEACTIVATED, S.READY, S.ABORTING}),
    S.READY: frozenset({S.STARTING, S.RUNNING, S.COMPLETING, S.ABORTING}),
    S.STARTING: frozenset({S.RUNNING, S.COMPLETING, S.ABORTING}),
    S.RUNNING: frozenset({S.COMPLETING, S.ABORTING}),
    S.COMPLETING: frozenset({S.DONE}),
    S.ABORTING: frozenset({S.FAILED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.INVALIDATED: frozenset(),
}


# When the engine cannot carry a run on (a runner call, the disk or a poison plan fails for it), the
# run fails instead of blocking the others: unfinished → aborting (its worker is then stopped and
# its outputs settled as usual), and aborting → failed at once when even finishing it fails. Only
# the engine makes these moves; users' stops follow ALLOWED (a completing run cannot be aborted).
FAILURE: dict[RunStatus, RunStatus] = {s: S.ABORTING for s in PROCESSING - {S.ABORTING}} | {S.ABORTING: S.FAILED}


def failure_of(current: RunStatus) -> RunStatus | None:
    """Where the engine moves a run it cannot carry on; None for a finished run."""
    return FAILURE.get(current)


def check_transition(current: RunStatus, new: RunStatus) -> bool:
    """True when the change must be written, False for a same-status no-op; raises when the
    table forbids it (a terminal status never "changes" to itself either)."""
    if current == new and not current.finished:
        return False
    if new not in ALLOWED[current]:
        raise InvalidTransition(f"run status cannot change from {current} to {new}")
    return True


def parse_status_list(text: str) -> list[RunStatus]:
    """The ``status=`` query of ``GET /api/runs``: a comma list, ``invalidated`` refused."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    allowed = [s.value for s in RunStatus if s is not S.INVALIDATED]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise BadRequest(f'"status" should be one of {", ".join(allowed)}: {", ".join(bad)}')
    return [RunStatus(n) for n in names]
