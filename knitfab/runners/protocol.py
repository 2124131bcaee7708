"""The runner protocol: how the engine has a Run executed somewhere, with Job semantics.

A runner executes one *attempt* of a run: no restarts, an exit code at the end. The engine
calls it from one thread, so every method must return promptly (seconds at most) and be
idempotent: after a crash the engine may call any of them again for the same job.

* ``prepare(job)``: make each output directory (and the log's) exist, writable and empty.
  Called before ``start``; raising leaves the run waiting to be prepared again.
* ``start(job) -> str``: launch the worker and return a *handle* that identifies it across a
  server restart (the engine stores it and passes it back as ``job.worker``). Raise
  ``RunnerError`` for a run that can never start on this runner: the run fails with its message.
* ``status(job) -> WorkerStatus``: starting, running, succeeded, failed (with exit code and
  message) or missing (the worker is gone without a result).
* ``still_running(run_id) -> bool``: True only when the runner knows from memory, looking at
  nothing, that the worker ``status`` last called running still is; the engine then neither
  loads the run nor asks ``status``. A runner that cannot tell says False (the default).
* ``logs(job, follow) -> Iterator[bytes]``: the worker's stdout+stderr so far; with ``follow``,
  keep yielding until the worker ends.
* ``stop(job) -> bool``: ask the worker to end (gracefully first); True once it has ended or
  never existed. The engine calls it again until it says True.
* ``cleanup(job)``: release what the worker held once it has ended; outputs stay where they
  are. After it, the log of the run is complete in its log Data.
* ``capacity``: what the runner may run at once (``{"cpu": cores, "memory": bytes, ...}``), or
  None when something else (a Kubernetes scheduler) decides.

Host paths follow ``knitfab.store.Layout``: inputs are ``layout.data(knitId)``, outputs and the
log are written to ``layout.staging(knitId)`` and moved into place when the run finishes.
"""

from __future__ import annotations

import enum
import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol


class RunnerError(Exception):
    """A run that cannot be started on this runner; the message says what to change."""


class WorkerState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MISSING = "missing"


@dataclass(frozen=True)
class WorkerStatus:
    state: WorkerState
    code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Mount:
    path: str
    knit_id: str


@dataclass
class Job:
    """Everything a runner needs to know about one run."""

    run_id: str
    plan_id: str
    image: str
    entrypoint: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    inputs: list[Mount] = field(default_factory=list)
    outputs: list[Mount] = field(default_factory=list)
    log: str | None = None  # knitId of the log Data, when the plan keeps a log
    resources: dict[str, str] = field(default_factory=dict)
    on_node: list[tuple[str, str, str]] = field(default_factory=list)
    service_account: str | None = None
    worker: str | None = None  # the handle start() returned
    env: dict[str, str] = field(default_factory=dict)  # for the worker, from lifecycle hooks (hooks.py)

    @property
    def writable(self) -> list[str]:
        """knitIds of the Data this run writes: its outputs and its log."""
        return [m.knit_id for m in self.outputs] + ([self.log] if self.log else [])


# What status() says of a worker that is gone without a result (Knitfab's exit code and message).
GONE = WorkerStatus(WorkerState.MISSING, 254, "worker for the run is not found")


def empty_outputs(layout, job: Job, mode: int | None = None) -> None:
    """``prepare()``'s work on the shared data directory: an empty staging directory for every
    output and the log (a previous attempt's leftovers removed), and the log file; ``mode`` for
    workers that may run as another user."""
    for knit_id in job.writable:
        staging = layout.staging(knit_id)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        if mode is not None:
            staging.chmod(mode)
    if job.log:
        (layout.staging(job.log) / "log").touch()


class Runner(Protocol):
    capacity: dict[str, Decimal] | None

    def prepare(self, job: Job) -> None: ...

    def start(self, job: Job) -> str: ...

    def status(self, job: Job) -> WorkerStatus: ...

    def logs(self, job: Job, follow: bool = False) -> Iterator[bytes]: ...

    def stop(self, job: Job) -> bool: ...

    def cleanup(self, job: Job) -> None: ...

    def still_running(self, run_id: str) -> bool:
        return False

    def check_plan(self, image: str, version: str, entrypoint: list[str] | None) -> None:
        """At ``plan apply``: raise ``BadRequest`` for a plan this runner could never start.
        Runners that cannot tell accept every plan."""

    def reconcile(self, live: Collection[str]) -> list[str]:
        """At start-up: remove workers that no run in ``live`` owns (a runner whose workers
        outlive the server's record of them); the handles removed. Runners whose workers die
        with the server have nothing to do."""
        return []
