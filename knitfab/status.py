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
        return self in FINISHED


S = RunStatus
PROCESSING = frozenset({S.DEACTIVATED, S.WAITING, S.READY, S.STARTING, S.RUNNING, S.COMPLETING, S.ABORTING})
LIVE = frozenset({S.READY, S.STARTING, S.RUNNING, S.COMPLETING, S.ABORTING})  # a worker may exist
FINISHED = frozenset({S.DONE, S.FAILED, S.INVALIDATED})

# Anything not listed is refused with 409 "prohibited operation". Retry, delete and the engine's
# failures are not moves of this machine: they have tables of their own below (OPERATIONS).
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


def initial_status(active: bool) -> RunStatus:
    """Where a new (or retried) run of a plan starts: it waits unless its plan is deactivated."""
    return S.WAITING if active else S.DEACTIVATED


def activation(active: bool) -> tuple[RunStatus, RunStatus]:
    """(from, to) of a plan's waiting runs when the plan is activated or deactivated."""
    return initial_status(not active), initial_status(active)


# Moves that are not a run's own life: retry (§6.7) puts a finished run back to where a new run
# of its plan starts, delete (§6.8) invalidates a run that has finished or never started, and
# the engine fails a run it cannot carry on (FAILURE).
RESTARTABLE = frozenset({S.DONE, S.FAILED})
REMOVABLE = frozenset({S.DONE, S.FAILED, S.WAITING, S.DEACTIVATED})
OPERATIONS: dict[str, dict[RunStatus, frozenset[RunStatus]]] = {
    "run": ALLOWED,
    "retry": {s: frozenset({S.WAITING, S.DEACTIVATED}) for s in RESTARTABLE},
    "delete": {s: frozenset({S.INVALIDATED}) for s in REMOVABLE},
    "fail": {s: frozenset({t}) for s, t in FAILURE.items()},
}


def check_transition(current: RunStatus, new: RunStatus, operation: str = "run") -> bool:
    """True when the change must be written, False for a same-status no-op; raises when the
    operation's table forbids it (a terminal status never "changes" to itself either)."""
    if current == new and not current.finished and operation == "run":
        return False
    if new not in OPERATIONS[operation].get(current, frozenset()):
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
