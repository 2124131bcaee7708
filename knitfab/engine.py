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

Runner calls happen outside transactions; the status change that follows is a compare-and-set
in its own ``BEGIN IMMEDIATE``, so a user's abort in between always wins. Each stage takes at
most ``batch`` runs after a per-stage cursor (round-robin), so a stuck run never starves others.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable
from decimal import Decimal

from . import data as datastore
from . import projection, quantity, runs
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


class Engine:
    def __init__(self, store: Store, runner: Runner, batch: int = 32, poll: float = 1.0):
        self.store = store
        self.runner = runner
        self.batch = batch
        self.poll = poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cursors: dict[str, int] = {}
        self._notes: dict[str, str] = {}  # runId -> the message last noted while it starts or runs

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
            if not self.tick():
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
        return projection.project_all(self.store, now) > 0

    def initialize(self, now: int | None = None) -> bool:
        def prepare(job: Job) -> bool:
            self.runner.prepare(job)
            return self._move(job.run_id, S.READY, {S.WAITING}, now=now)

        return self._each("initialize", [S.WAITING], prepare)

    def start(self, now: int | None = None) -> bool:
        ready = self.store.column(
            "SELECT r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
            " WHERE r.status = 'ready' AND +p.name IS NULL ORDER BY r.updated_at, r.seq"
        )
        used, did = self._in_use(), False
        for run_id in ready:
            job = load_job(self.store, run_id)
            need = _requests(job)
            if not _fits(need, {}, self.runner.capacity):
                did = self._move(run_id, S.ABORTING, {S.READY}, (255, _too_big(need, self.runner.capacity)), now)
                continue
            if not _fits(need, used, self.runner.capacity):
                break  # the rest wait, in order, for capacity to free up
            did = self._launch(job, now) or did
            for rtype, amount in need.items():
                used[rtype] = used.get(rtype, Decimal(0)) + amount
        return did

    def _launch(self, job: Job, now: int | None) -> bool:
        try:
            handle = self.runner.start(job)
        except RunnerError as e:
            return self._move(job.run_id, S.ABORTING, {S.READY}, (255, str(e)), now)
        with self.store.write():
            runs.set_worker(self.store, job.run_id, handle)
            runs.set_status(self.store, job.run_id, S.STARTING, only_from=frozenset({S.READY}), now=now)
        log.info("run %s started", job.run_id)
        return True

    def watch(self, now: int | None = None) -> bool:
        def follow(job: Job) -> bool:
            status = self.runner.status(job)
            self._note(job.run_id, status)
            if status.state == WorkerState.STARTING:
                return False
            new, exit = _WATCHED.get(status.state, (S.ABORTING, (status.code, status.message)))
            return self._move(job.run_id, new, {S.STARTING, S.RUNNING}, exit, now)

        return self._each("watch", [S.STARTING, S.RUNNING], follow)

    def finish(self, now: int | None = None) -> bool:
        def settle(job: Job) -> bool:
            if job.worker:
                if not self.runner.stop(job):
                    return False  # still ending: look again next tick
                self.runner.cleanup(job)
            for knit_id in job.writable:
                self.store.layout.publish(knit_id)
            with self.store.write():
                final = runs.finish(self.store, job.run_id, now)
            log.info("run %s is %s", job.run_id, final)
            return final is not None

        return self._each("finish", [S.COMPLETING, S.ABORTING], settle)

    def collect_garbage(self, now: int | None = None) -> bool:
        """Remove dropped Data; one that cannot be removed is logged and stays queued, to be tried
        again after the others (round-robin by rowid)."""
        cursor = self._cursors.get("gc", 0)
        sql = "SELECT rowid, knit_id FROM garbage WHERE rowid {} ? ORDER BY rowid LIMIT ?"
        rows = self.store.all(sql.format(">"), cursor, self.batch)
        rows += self.store.all(sql.format("<="), cursor, self.batch - len(rows))
        removed = [knit_id for _, knit_id in rows if self._remove(knit_id)]
        if rows:
            self._cursors["gc"] = rows[-1][0]
        for knit_id in removed:
            with self.store.write():
                self.store.execute("DELETE FROM garbage WHERE knit_id = ?", knit_id)
        return bool(removed)

    def _remove(self, knit_id: str) -> bool:
        try:
            for path in (self.store.layout.data(knit_id), self.store.layout.staging(knit_id)):
                if path.exists() or path.is_symlink():
                    shutil.rmtree(path)
            return True
        except OSError as e:
            log.error("cannot remove the files of dropped Data %s (will try again): %s", knit_id, e)
            return False

    # -- helpers --------------------------------------------------------------------------------

    def _each(self, stage: str, statuses: list[RunStatus], step: Callable[[Job], bool]) -> bool:
        did = False
        for run_id in self._pick(stage, statuses):
            try:
                did = step(load_job(self.store, run_id)) or did
            except Exception:
                log.exception("engine stage %s failed on run %s", stage, run_id)
        return did

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

    def _note(self, run_id: str, status) -> None:
        """Keep a waiting worker's complaint as the run's message (written when it changes)."""
        if status.state in (WorkerState.STARTING, WorkerState.RUNNING) and self._notes.get(run_id) != status.message:
            with self.store.write():
                runs.note(self.store, run_id, status.message)
            self._notes[run_id] = status.message
        elif status.state not in (WorkerState.STARTING, WorkerState.RUNNING):
            self._notes.pop(run_id, None)

    def _move(self, run_id: str, new: RunStatus, expected: set, exit=None, now: int | None = None) -> bool:
        with self.store.write():
            return runs.set_status(self.store, run_id, new, exit, frozenset(expected), now)

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
