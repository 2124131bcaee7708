"""How the engine writes what its stages decide, and how one run's failure stays its own.

A stage queues compare-and-set status changes (``_move``, ``_note``) and writes them together in
one ``BEGIN IMMEDIATE`` (``_flush``, ``_record_finished``), each alone when that fails; a step that
raises fails only its run, at once or after ``patience`` for errors of the environment (``_guarded``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import KnitfabError
from ..hooks import Hooks
from ..runners.protocol import Job, RunnerError, WorkerState
from ..status import RunStatus
from ..store import runs
from ..store.db import Store
from ..store.jobs import load_jobs

log = logging.getLogger("knitfab.engine")


class Moves:
    """The engine's writes and isolation; ``Engine.__init__`` sets these attributes."""

    store: Store
    hooks: Hooks
    patience: float
    _failing: dict[str, float]
    _discard: set[str]
    _moves: list[tuple]
    _settled: list[str]
    _noted: list[tuple[str, str]]
    _notes: dict[str, str]

    # -- isolation ------------------------------------------------------------------------------

    def _each(self, stage: str, run_ids: list[str], step: Callable[[Job], bool], now: int | None) -> bool:
        did, loaded = False, load_jobs(self.store, run_ids) if run_ids else {}
        for run_id in run_ids:
            job = loaded.get(run_id)  # None: deleted since the stage picked it
            if job is not None:
                did = bool(self._guarded(stage, run_id, lambda j=job: step(j), now)) or did
        return did

    def _guarded(self, stage: str, run_id: str, step: Callable[[], object], now: int | None):
        """``step()``'s result. When it raises: True once the run has been failed with the error,
        False when it is left to try again (see the package's "Isolation")."""
        try:
            result = step()
        except Exception as e:
            log.exception("engine stage %s failed on run %s", stage, run_id)
            if _transient(e) and not self._out_of_patience(run_id):
                return False
            return self._give_up(run_id, f"knitfab could not {stage} the run: {type(e).__name__}: {e}", now)
        self._failing.pop(run_id, None)
        return result

    def _out_of_patience(self, run_id: str) -> bool:
        began = self._failing.setdefault(run_id, time.monotonic())
        return time.monotonic() - began >= self.patience

    def _give_up(self, run_id: str, message: str, now: int | None) -> bool:
        """Fail a run the engine cannot carry on; False when even that could not be written."""
        try:
            with self.store.write():
                failed = runs.fail(self.store, run_id, message, now)
        except Exception:
            log.exception("could not fail run %s either; trying again next tick", run_id)
            return False
        self._failing.pop(run_id, None)
        log.warning("run %s failed: %s", run_id, message)
        return failed is not None

    # -- the stages' writes ---------------------------------------------------------------------

    def _note(self, run_id: str, status) -> None:
        """Keep a waiting worker's complaint as the run's message (written when it changes, with
        the stage's status changes in ``_flush``)."""
        if status.state in (WorkerState.STARTING, WorkerState.RUNNING) and self._notes.get(run_id) != status.message:
            self._noted.append((run_id, status.message))
            self._notes[run_id] = status.message
        elif status.state not in (WorkerState.STARTING, WorkerState.RUNNING):
            self._notes.pop(run_id, None)

    def _move(self, run_id: str, new: RunStatus, expected: set, exit=None, now=None, worker=None) -> bool:
        """Queue a compare-and-set status change (and the worker's handle) for ``_flush``; the
        stage's changes are written in one transaction, not one commit per run. False: the
        change is not made yet. A before-hook that refuses holds the change for a later tick
        (``_launch`` has asked them already: it passes the worker's handle)."""
        if worker is None and self.hooks.before_change(self.store, run_id, new) is None:
            return False
        self._moves.append((run_id, new, frozenset(expected), exit, worker))
        return False

    def _flush(self, now: int | None) -> bool:
        """Write the queued changes; True when any run changed. If writing them together fails,
        each is written alone, so one bad change fails only its run."""
        moves, self._moves = self._moves, []
        notes, self._noted = self._noted, []
        if not moves and not notes:
            return False
        try:
            with self.store.write():
                for run_id, message in notes:
                    runs.note(self.store, run_id, message)
                moved = [move[0] for move in moves if self._apply(move, now)]
        except Exception:
            log.exception("writing %d status changes failed; writing them one by one", len(moves))
            for run_id in dict(notes):
                self._notes.pop(run_id, None)  # noted again on the next watch
            moved = [m[0] for m in moves if self._guarded("record", m[0], lambda m=m: self._apply_alone(m, now), now)]
        for run_id in moved:
            self.hooks.after_change(self.store, run_id)
        return bool(moved)

    def _apply_alone(self, move: tuple, now: int | None) -> bool:
        with self.store.write():
            return self._apply(move, now)

    def _apply(self, move: tuple, now: int | None) -> bool:
        run_id, new, expected, exit, worker = move
        if worker is not None:
            runs.set_worker(self.store, run_id, worker)  # even if the run was aborted meanwhile: finish stops it
        return runs.set_status(self.store, run_id, new, exit, expected, now)

    def _record_finished(self, now: int | None) -> bool:
        """Write the settled runs done/failed together (if that fails, each alone, so one bad
        run fails only itself); their after-hooks follow the commit."""
        settled, self._settled = self._settled, []
        if not settled:
            return False
        try:
            with self.store.write():
                finals = {run_id: runs.finish(self.store, run_id, now) for run_id in settled}
        except Exception:
            log.exception("finishing %d runs together failed; finishing them one by one", len(settled))
            finals = {r: self._guarded("finish", r, lambda r=r: self._finish_alone(r, now), now) for r in settled}
        for run_id, final in finals.items():
            self._discard.discard(run_id)  # its outputs are gone already, whatever the commit did
            if isinstance(final, RunStatus):
                self.hooks.after_change(self.store, run_id)
                log.info("run %s is %s", run_id, final)
        return any(finals.values())

    def _finish_alone(self, run_id: str, now: int | None) -> RunStatus | None:
        with self.store.write():
            return runs.finish(self.store, run_id, now)


def _transient(e: Exception) -> bool:
    """Whether an error may be of the environment and pass (a full disk, a busy database, a
    cluster API that did not answer) rather than of the run itself (a poison plan)."""
    if isinstance(e, OSError):
        return True
    return not isinstance(e, KnitfabError | RunnerError) and type(e).__module__ != "builtins"
