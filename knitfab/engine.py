"""The engine: one ``tick()`` drives every run one step along its life.

Stages, in order (Knitfab's loops, run one after another in one thread):

1. **project**: turn updated nominations into new runs (``projection``).
2. **initialize**: ``waiting`` runs get empty output directories (``runner.prepare``) → ``ready``.
3. **start**: ``ready`` runs start in order while their cpu/memory requests fit the runner's
   capacity → ``starting``.
4. **watch**: ``starting``/``running`` runs follow their worker → ``running``, ``completing``
   (exit 0) or ``aborting`` (the exit code; 254 when the worker is gone).
5. **finish**: ``completing``/``aborting`` runs have their worker stopped and cleaned up, their
   outputs moved into place, and become ``done``/``failed``; done outputs are nominated.
6. **collect garbage**: directories of dropped Data are removed.

Runner calls happen outside transactions; the status changes that follow are compare-and-sets,
a stage's written together in one ``BEGIN IMMEDIATE`` once its runner calls are made, so a
user's abort in between always wins.

Fairness: projection works in batches of at most ``projection.BATCH`` combinations shared
between plans; initialize and start take at most ``batch`` runs, the plans taking turns (the
first run of every plan, then the second...), so a plan with thousands of runs holds back
another plan's run by at most one batch; watch and finish take ``batch`` runs after a per-stage
cursor (round-robin), so a stuck run never starves others.

Isolation: when a stage raises for one run, that run fails (``runs.fail``) with a message
naming the error and the others go on. Errors of the environment (``OSError``, SQLite, a
cluster client) may pass: the run is tried again on later ticks and fails once its step has
kept failing for ``patience`` seconds. An error of the run itself (a poison plan) fails it at once.

Disk: below the free-disk ``reserve`` of the data volume no run starts, and the run that has
written the most is stopped, its outputs discarded (its log kept, cut short) and failed with a
message, so the database always has room and the server recovers by itself.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from decimal import Decimal

from . import data as datastore
from . import quantity, runs
from .errors import KnitfabError
from .outputspace import discard_outputs, free_bytes, written_bytes
from .projection import Projector
from .runner import Job, Mount, Runner, RunnerError, WorkerState
from .status import RunStatus
from .store import Store, json_list

log = logging.getLogger("knitfab.engine")
S = RunStatus
# Queries below write "+p.name": SQLite would otherwise start from the plan-name index and walk
# every run of every plan; the run status index finds the few runs a stage wants.
_WATCHED = {
    WorkerState.RUNNING: (S.RUNNING, None),
    WorkerState.SUCCEEDED: (S.COMPLETING, (0, "")),
}
_FULL = object()  # start: the runner's capacity is taken


class Engine:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        batch: int = 32,
        poll: float = 1.0,
        reserve: int = 0,
        patience: float = 60.0,
        projector: Projector | None = None,
    ):
        self.store = store
        self.runner = runner
        self.batch = batch
        self.poll = poll
        self.reserve = reserve  # bytes kept free on the data volume; 0: no check
        self.patience = patience
        self.projector = projector or Projector(store)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cursors: dict[str, int] = {}
        self._failing: dict[str, float] = {}  # runId → when its step began to fail (transient errors)
        self._discard: set[str] = set()  # runs stopped for filling the disk: outputs dropped at finish
        self._moves: list[tuple] = []  # status changes of the current stage, see _flush
        self._short = False  # the data volume is below the reserve

    # -- driving --------------------------------------------------------------------------------

    def tick(self, now: int | None = None) -> bool:
        """One pass over the stages; True when any of them changed something. ``now`` (µs since
        the epoch) stamps the changes made in this pass; tests pass it, the server does not."""
        did = False
        for stage in (self.project, self.initialize, self.start, self.watch, self.finish, self.collect_garbage):
            if self._stop.is_set():
                break  # stopping: leave between two stages, never in the middle of one
            try:
                did = bool(stage(now)) or did
            except Exception:
                log.exception("engine stage %s failed", stage.__name__)
        return did

    def run_until_idle(self, max_ticks: int = 1000) -> int:
        """Tick until nothing changes (for tests and one-shot use); returns the ticks that did work."""
        for n in range(max_ticks):
            if not self.tick():
                return n
        raise RuntimeError(f"engine still busy after {max_ticks} ticks")

    def wake(self) -> None:
        """Ask for a tick now: API writes call it, so a run starts within milliseconds."""
        self._wake.set()

    def run_forever(self, stop: threading.Event) -> None:
        """The engine thread: tick while there is work, else sleep until woken or ``poll``.
        Call ``recover()`` first, before the API accepts uploads."""
        self._stop = stop
        while not stop.is_set():
            self._wake.clear()
            try:
                busy = self.tick()
            except Exception:  # tick() catches its stages' errors; this thread must outlive anything
                log.exception("engine tick failed")
                busy = False
            if not busy:
                self._wake.wait(self.poll)

    def recover(self) -> None:
        """At start-up, before serving: uploads that were in flight when the server died can
        never complete, so they fail.
        Image runs need nothing here: ``watch`` finds their workers again, or reports 254."""
        orphans = self.store.column(
            "SELECT r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
            " WHERE +p.name IS NOT NULL AND r.status = 'running'"
        )
        for run_id in orphans:
            log.warning("upload run %s was interrupted by a restart: failing it", run_id)
            datastore.end_upload(self.store, run_id, ok=False, message="the server stopped during the upload")
        reconcile = getattr(self.runner, "reconcile", None)  # runners whose workers outlive a run's record
        if reconcile is not None:
            live = self.store.column(
                "SELECT run_id FROM run WHERE status IN ('ready', 'starting', 'running', 'completing', 'aborting')"
            )
            for handle in reconcile(live):
                log.warning("deleted worker %s, which no run of this server owns", handle)

    # -- stages ---------------------------------------------------------------------------------

    def project(self, now: int | None = None) -> bool:
        """One batch of projection (see ``projection.Projector``)."""
        return self.projector.batch(now) > 0

    def initialize(self, now: int | None = None) -> bool:
        def prepare(job: Job) -> bool:
            self.runner.prepare(job)
            return self._move(job.run_id, S.READY, {S.WAITING}, now=now)

        failed = self._each("initialize", self._take_turns([S.WAITING], "r.seq"), prepare, now)
        return self._flush(now) or failed

    def start(self, now: int | None = None) -> bool:
        if self._disk_short() is not None:
            return False  # runs wait: what they would write could only fill the disk further
        used, did = self._in_use(), False
        for run_id in self._take_turns([S.READY], "r.updated_at, r.seq"):
            started = self._guarded("start", run_id, lambda r=run_id: self._start_one(r, used, now), now)
            if started is _FULL:
                break  # the rest wait, in order, for capacity to free up
            did = bool(started) or did
        return self._flush(now) or did

    def _start_one(self, run_id: str, used: dict[str, Decimal], now: int | None):
        """Start one ready run and count what it takes in ``used``; ``_FULL`` when it must wait."""
        job = load_job(self.store, run_id)
        need = _requests(job)
        if not _fits(need, {}, self.runner.capacity):
            return self._move(run_id, S.ABORTING, {S.READY}, (255, _too_big(need, self.runner.capacity)), now)
        if not _fits(need, used, self.runner.capacity):
            return _FULL
        for rtype, amount in need.items():
            used[rtype] = used.get(rtype, Decimal(0)) + amount
        return self._launch(job, now)

    def _launch(self, job: Job, now: int | None) -> bool:
        try:
            handle = self.runner.start(job)
        except RunnerError as e:
            return self._move(job.run_id, S.ABORTING, {S.READY}, (255, str(e)), now)
        log.info("run %s started", job.run_id)
        return self._move(job.run_id, S.STARTING, {S.READY}, now=now, worker=handle)

    def watch(self, now: int | None = None) -> bool:
        def follow(job: Job) -> bool:
            status = self.runner.status(job)
            if status.state == WorkerState.STARTING:
                return False
            new, exit = _WATCHED.get(status.state, (S.ABORTING, (status.code, status.message)))
            return self._move(job.run_id, new, {S.STARTING, S.RUNNING}, exit, now)

        stopped = self._stop_the_biggest_writer(now)
        failed = self._each("watch", self._pick("watch", [S.STARTING, S.RUNNING]), follow, now)
        return self._flush(now) or failed or stopped

    def finish(self, now: int | None = None) -> bool:
        def settle(job: Job) -> bool:
            if job.worker:
                if not self.runner.stop(job):
                    return False  # still ending: look again next tick
                self.runner.cleanup(job)
            if job.run_id in self._discard:
                discard_outputs(self.store.layout, job)
            for knit_id in job.writable:
                self.store.layout.publish(knit_id)
            with self.store.write():
                final = runs.finish(self.store, job.run_id, now)
            self._discard.discard(job.run_id)
            log.info("run %s is %s", job.run_id, final)
            return final is not None

        return self._each("finish", self._pick("finish", [S.COMPLETING, S.ABORTING]), settle, now)

    def collect_garbage(self, now: int | None = None) -> bool:
        knit_ids = self.store.column("SELECT knit_id FROM garbage LIMIT ?", self.batch)
        did = False
        for knit_id in knit_ids:
            try:
                shutil.rmtree(self.store.layout.data(knit_id), ignore_errors=True)
                shutil.rmtree(self.store.layout.staging(knit_id), ignore_errors=True)
                with self.store.write():
                    self.store.execute("DELETE FROM garbage WHERE knit_id = ?", knit_id)
                did = True
            except Exception:  # this one is tried again next tick; the others go on
                log.exception("could not remove the files of Data %s", knit_id)
        return did

    # -- the free-disk reserve ------------------------------------------------------------------

    def _disk_short(self) -> int | None:
        """Free bytes of the data volume when they are below the reserve, else None."""
        if self.reserve <= 0:
            return None
        free = free_bytes(self.store.layout.root)
        short = free < self.reserve
        if short != self._short:  # said once when it changes, not on every tick
            self._short = short
            if short:
                log.warning("data volume: %d bytes free, below the reserve of %d: no run starts", free, self.reserve)
            else:
                log.info("data volume: %d bytes free again, runs start", free)
        return free if short else None

    def _stop_the_biggest_writer(self, now: int | None) -> bool:
        """Below the reserve, fail the running run that has written the most (one per tick: once
        its outputs are discarded at finish the disk may well be fine again)."""
        free = self._disk_short()
        if free is None:
            return False
        writers = self.store.column(
            "SELECT r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
            " WHERE r.status IN ('starting', 'running') AND +p.name IS NULL"
        )
        sizes = {run_id: written_bytes(self.store.layout, load_job(self.store, run_id)) for run_id in writers}
        biggest = max(sizes, key=sizes.__getitem__, default=None)
        if biggest is None or sizes[biggest] == 0:
            return False  # something else filled the disk: no run to blame
        log.warning("data volume below its reserve (%d bytes free): stopping run %s", free, biggest)
        self._discard.add(biggest)
        discard_outputs(self.store.layout, load_job(self.store, biggest))  # first: the database needs room
        return self._give_up(
            biggest,
            f"the data volume is full: {free} bytes free, below the reserve of {self.reserve} bytes;"
            f" this run wrote the most ({sizes[biggest]} bytes), so knitfab stopped it and discarded its outputs",
            now,
        )

    # -- helpers --------------------------------------------------------------------------------

    def _each(self, stage: str, run_ids: list[str], step: Callable[[Job], bool], now: int | None) -> bool:
        did = False
        for run_id in run_ids:
            did = bool(self._guarded(stage, run_id, lambda r=run_id: step(load_job(self.store, r)), now)) or did
        return did

    def _guarded(self, stage: str, run_id: str, step: Callable[[], object], now: int | None):
        """``step()``'s result. When it raises: True once the run has been failed with the error,
        False when it is left to try again (see the module's "Isolation")."""
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

    def _take_turns(self, statuses: list[RunStatus], order: str) -> list[str]:
        """Up to ``batch`` runs of image plans in ``statuses``, the plans taking turns: the first
        run (in ``order``) of every plan, then the second, and so on, a plan's turns counted after
        the runs it has in flight (so a plan with two runs going waits for one with none)."""
        return self.store.column(
            "WITH busy AS (SELECT plan_id, COUNT(*) AS n FROM run WHERE worker IS NOT NULL GROUP BY plan_id)"
            " SELECT run_id FROM (SELECT r.run_id, r.seq, r.updated_at, COALESCE(b.n, 0)"
            f" + ROW_NUMBER() OVER (PARTITION BY r.plan_id ORDER BY {order}) AS turn"
            " FROM run r JOIN plan p ON p.plan_id = r.plan_id LEFT JOIN busy b ON b.plan_id = r.plan_id"
            " WHERE r.status IN (SELECT value FROM json_each(?)) AND +p.name IS NULL) r"
            f" ORDER BY turn, {order} LIMIT ?",
            json_list(s.value for s in statuses),
            self.batch,
        )

    def _pick(self, stage: str, statuses: list[RunStatus]) -> list[str]:
        """Up to ``batch`` runs of image plans in ``statuses``, continuing after the last one
        this stage saw and wrapping around."""
        cursor = self._cursors.get(stage, 0)
        sql = (
            "SELECT r.seq, r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
            " WHERE r.status IN (SELECT value FROM json_each(?)) AND +p.name IS NULL AND r.seq {} ?"
            " ORDER BY r.seq LIMIT ?"
        )
        names = json_list(s.value for s in statuses)
        rows = self.store.all(sql.format(">"), names, cursor, self.batch)
        rows += self.store.all(sql.format("<="), names, cursor, self.batch - len(rows))
        if rows:
            self._cursors[stage] = rows[-1][0]
        return [run_id for _, run_id in rows]

    def _move(self, run_id: str, new: RunStatus, expected: set, exit=None, now=None, worker=None) -> bool:
        """Queue a compare-and-set status change (and the worker's handle) for ``_flush``; the
        stage's changes are written in one transaction, not one commit per run. False: the
        change is not made yet."""
        self._moves.append((run_id, new, frozenset(expected), exit, worker))
        return False

    def _flush(self, now: int | None) -> bool:
        """Write the queued changes; True when any run changed. If writing them together fails,
        each is written alone, so one bad change fails only its run."""
        moves, self._moves = self._moves, []
        if not moves:
            return False
        try:
            with self.store.write():
                changed = [move[0] for move in moves if self._apply(move, now)]
        except Exception:
            log.exception("writing %d status changes failed; writing them one by one", len(moves))
            changed = [m[0] for m in moves if self._guarded("record", m[0], lambda m=m: self._apply_alone(m, now), now)]
        return bool(changed)  # the runIds that changed, once committed: where after-change work goes

    def _apply_alone(self, move: tuple, now: int | None) -> bool:
        with self.store.write():
            return self._apply(move, now)

    def _apply(self, move: tuple, now: int | None) -> bool:
        run_id, new, expected, exit, worker = move
        if worker is not None:
            runs.set_worker(self.store, run_id, worker)  # even if the run was aborted meanwhile: finish stops it
        return runs.set_status(self.store, run_id, new, exit, expected, now)

    def _in_use(self) -> dict[str, Decimal]:
        used: dict[str, Decimal] = {}
        for rtype, qty in self.store.all(
            "SELECT pr.type, pr.quantity FROM run r JOIN plan_resource pr ON pr.plan_id = r.plan_id"
            " WHERE r.worker IS NOT NULL"
        ):
            used[rtype] = used.get(rtype, Decimal(0)) + quantity.value(qty)
        return used


def load_job(store: Store, run_id: str) -> Job:
    """A run as the runner sees it."""
    plan_id, image, version, entrypoint, args, account, worker = store.one(
        "SELECT r.plan_id, p.image, p.version, p.entrypoint, p.args, p.service_account, r.worker"
        " FROM run r JOIN plan p ON p.plan_id = r.plan_id WHERE r.run_id = ?",
        run_id,
    )
    inputs = store.all(
        "SELECT i.path, a.knit_id FROM assign a JOIN input i ON i.id = a.input_id WHERE a.run_id = ? ORDER BY i.path",
        run_id,
    )
    made = store.all(
        "SELECT o.path, d.knit_id, o.is_log FROM data d JOIN output o ON o.id = d.output_id"
        " WHERE d.run_id = ? ORDER BY o.path",
        run_id,
    )
    return Job(
        run_id=run_id,
        plan_id=plan_id,
        image=f"{image}:{version}",
        entrypoint=json.loads(entrypoint) if entrypoint else [],
        args=json.loads(args) if args else [],
        inputs=[Mount(path, knit_id) for path, knit_id in inputs],
        outputs=[Mount(path, knit_id) for path, knit_id, is_log in made if not is_log],
        log=next((knit_id for _, knit_id, is_log in made if is_log), None),
        resources=dict(store.all("SELECT type, quantity FROM plan_resource WHERE plan_id = ?", plan_id)),
        on_node=store.all("SELECT mode, key, value FROM plan_on_node WHERE plan_id = ? ORDER BY 1, 2, 3", plan_id),
        service_account=account,
        worker=worker,
    )


def _requests(job: Job) -> dict[str, Decimal]:
    return {rtype: quantity.value(qty) for rtype, qty in job.resources.items()}


def _fits(need: dict[str, Decimal], used: dict[str, Decimal], capacity: dict[str, Decimal] | None) -> bool:
    if capacity is None:
        return True
    return all(used.get(k, 0) + v <= capacity.get(k, 0) for k, v in need.items() if v > 0)


def _too_big(need: dict[str, Decimal], capacity: dict[str, Decimal]) -> str:
    over = [f"{k}={need[k]} (capacity {capacity.get(k, 0)})" for k in need if need[k] > capacity.get(k, 0)]
    return "the run requests more than this runner can ever give: " + ", ".join(over)


def _transient(e: Exception) -> bool:
    """Whether an error may be of the environment and pass (a full disk, a busy database, a
    cluster API that did not answer) rather than of the run itself (a poison plan)."""
    if isinstance(e, OSError):
        return True
    return not isinstance(e, KnitfabError | RunnerError) and type(e).__module__ != "builtins"
