"""The ``Engine``: its thread's loop and its six stages (the package's docstring says what each
does); how they write and isolate failures is in ``moves``."""

from __future__ import annotations

import logging
import shutil
import threading
from decimal import Decimal

from .. import quantity
from ..diskspace import free_bytes
from ..hooks import Hooks
from ..outputspace import discard_outputs, written_bytes
from ..runners.protocol import Job, Runner, RunnerError, WorkerState
from ..status import RunStatus
from ..store import data, jobs
from ..store.db import Store
from ..store.jobs import load_job
from ..store.projection import Projector
from .moves import Moves

log = logging.getLogger("knitfab.engine")
S = RunStatus
_WATCHED = {
    WorkerState.RUNNING: (S.RUNNING, None),
    WorkerState.SUCCEEDED: (S.COMPLETING, (0, "")),
}
_FULL = object()  # start: the runner's capacity is taken
# The runs each stage takes. Every API write wakes the engine, most of them with nothing for it
# to do: a tick looks once which of these statuses have runs and skips the stages that have none.
_TAKES = {
    "initialize": {S.WAITING},
    "start": {S.READY},
    "watch": {S.STARTING, S.RUNNING},
    "finish": {S.COMPLETING, S.ABORTING},
}
_TAKEN = frozenset().union(*_TAKES.values())


class Engine(Moves):
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
        self._settled: list[str] = []  # runs finish has settled, see _record_finished
        self._noted: list[tuple[str, str]] = []  # (runId, message) of the current stage, see _note
        self._short = False  # the data volume is below the reserve
        self.hooks = Hooks()  # the operator's lifecycle hooks (hooks.py); the server sets them
        self._notes: dict[str, str] = {}  # runId -> the message last noted while it starts or runs

    # -- driving --------------------------------------------------------------------------------

    def tick(self, now: int | None = None) -> bool:
        """One pass over the stages; True when any of them changed something. ``now`` (µs since
        the epoch) stamps the changes made in this pass; tests pass it, the server does not."""
        did, occupied = False, self._occupied()
        for stage in (self.project, self.initialize, self.start, self.watch, self.finish, self.collect_garbage):
            if self._stop.is_set():
                break  # stopping: leave between two stages, never in the middle of one
            takes = _TAKES.get(stage.__name__)
            if takes and not did and takes.isdisjoint(occupied):
                continue  # no run for it, and no earlier stage of this tick made one
            try:
                did = bool(stage(now)) or did
            except Exception:
                log.exception("engine stage %s failed", stage.__name__)
        return did

    def _occupied(self) -> set[RunStatus]:
        """The statuses the stages take that some run is in (all of them when the store cannot
        tell: every stage then looks for itself)."""
        try:
            return jobs.occupied(self.store, _TAKEN)
        except Exception:
            log.exception("engine: cannot tell which stages have runs")
            return set(_TAKEN)

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
        data.recover_uploads(self.store)
        if self.runner is not None:
            for handle in self.runner.reconcile(jobs.live_runs(self.store)):
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
        ready = self._take_turns([S.READY], "r.updated_at, r.seq")
        loaded = jobs.load_jobs(self.store, ready) if ready else {}
        for job in (loaded[run_id] for run_id in ready if run_id in loaded):
            started = self._guarded("start", job.run_id, lambda j=job: self._start_one(j, used, now), now)
            if started is _FULL:
                break  # the rest wait, in order, for capacity to free up
            did = bool(started) or did
        return self._flush(now) or did

    def _start_one(self, job: Job, used: dict[str, Decimal], now: int | None):
        """Start one ready run and count what it takes in ``used``; ``_FULL`` when it must wait."""
        need = _requests(job)
        if not _fits(need, {}, self.runner.capacity):
            return self._move(job.run_id, S.ABORTING, {S.READY}, (255, _too_big(need, self.runner.capacity)), now)
        if not _fits(need, used, self.runner.capacity):
            return _FULL
        for rtype, amount in need.items():
            used[rtype] = used.get(rtype, Decimal(0)) + amount
        return self._launch(job, now)

    def _launch(self, job: Job, now: int | None) -> bool:
        env = self.hooks.before_change(self.store, job.run_id, S.STARTING)
        if env is None:
            return False  # a before-hook refused: the run stays ready and is tried again
        job.env.update(env)
        try:
            handle = self.runner.start(job)
        except RunnerError as e:
            return self._move(job.run_id, S.ABORTING, {S.READY}, (255, str(e)), now)
        log.info("run %s started", job.run_id)
        return self._move(job.run_id, S.STARTING, {S.READY}, now=now, worker=handle)

    def watch(self, now: int | None = None) -> bool:
        def follow(job: Job) -> bool:
            status = self.runner.status(job)
            self._note(job.run_id, status)
            if status.state == WorkerState.STARTING:
                return False
            new, exit = _WATCHED.get(status.state, (S.ABORTING, (status.code, status.message)))
            return self._move(job.run_id, new, {S.STARTING, S.RUNNING}, exit, now)

        stopped = self._stop_the_biggest_writer(now)
        changed = [r for r in self._pick("watch", [S.STARTING, S.RUNNING]) if not self.runner.still_running(r)]
        failed = self._each("watch", changed, follow, now)
        return self._flush(now) or failed or stopped

    def finish(self, now: int | None = None) -> bool:
        """Stop, clean up and publish each run (runner calls, outside transactions), then write
        every run so settled in one transaction (``_record_finished``)."""

        def settle(job: Job) -> bool:
            if job.worker:
                if not self.runner.stop(job):
                    return False  # still ending: look again next tick
                self.runner.cleanup(job)
            if self.hooks.before_change(self.store, job.run_id) is None:
                return False  # a before-hook refused: finishing is tried again
            if job.run_id in self._discard:
                discard_outputs(self.store.layout, job)
            for knit_id in job.writable:
                self.store.layout.publish(knit_id)
            self._settled.append(job.run_id)
            return False

        failed = self._each("finish", self._pick("finish", [S.COMPLETING, S.ABORTING]), settle, now)
        return self._record_finished(now) or failed

    def collect_garbage(self, now: int | None = None) -> bool:
        """Remove dropped Data; one that cannot be removed is logged and stays queued, to be tried
        again after the others (round-robin by rowid). (Removed here, not in the trash: the queue
        must keep what this server cannot remove, and users' deletes are not the hot path.)"""
        cursor = self._cursors.get("gc", 0)
        rows = jobs.garbage(self.store, cursor, self.batch)
        removed = [knit_id for _, knit_id in rows if self._remove(knit_id)]
        if rows:
            self._cursors["gc"] = rows[-1][0]
        jobs.collected(self.store, removed)
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
        writers = jobs.writing(self.store)
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

    def _take_turns(self, statuses: list[RunStatus], order: str) -> list[str]:
        return jobs.take_turns(self.store, statuses, order, self.batch)

    def _pick(self, stage: str, statuses: list[RunStatus]) -> list[str]:
        """Up to ``batch`` runs of image plans in ``statuses``, continuing after the last one
        this stage saw and wrapping around."""
        rows = jobs.after(self.store, statuses, self._cursors.get(stage, 0), self.batch)
        if rows:
            self._cursors[stage] = rows[-1][0]
        return [run_id for _, run_id in rows]

    def _in_use(self) -> dict[str, Decimal]:
        used: dict[str, Decimal] = {}
        for rtype, qty in jobs.resources_in_use(self.store):
            used[rtype] = used.get(rtype, Decimal(0)) + quantity.value(qty)
        return used


def _requests(job: Job) -> dict[str, Decimal]:
    return {rtype: quantity.value(qty) for rtype, qty in job.resources.items()}


def _fits(need: dict[str, Decimal], used: dict[str, Decimal], capacity: dict[str, Decimal] | None) -> bool:
    if capacity is None:
        return True
    return all(used.get(k, 0) + v <= capacity.get(k, 0) for k, v in need.items() if v > 0)


def _too_big(need: dict[str, Decimal], capacity: dict[str, Decimal]) -> str:
    have = {k: capacity.get(k, Decimal(0)) for k in need}
    show = quantity.readable
    over = [f"{k}={show(k, need[k])} (capacity {show(k, have[k])})" for k in need if need[k] > have[k]]
    return "the run requests more than this runner can ever give: " + ", ".join(over)
