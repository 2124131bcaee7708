"""An in-memory runner for engine tests: a worker's 'program' is its args.

``["succeed"]`` ends with exit 0 at once (writing ``result`` into each output and a line to the
log), ``["fail", "N"]`` ends with exit N, ``["hang"]`` runs until the test calls ``finish`` or
``vanish``, or the engine stops it.
"""

from __future__ import annotations

from knitfab.runners.protocol import GONE, Job, Runner, RunnerError, WorkerState, WorkerStatus, empty_outputs
from knitfab.store.layout import Layout


class FakeRunner(Runner):
    def __init__(self, layout: Layout, capacity=None):
        self.layout = layout
        self.capacity = capacity
        self.workers: dict[str, WorkerStatus] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []

    def prepare(self, job: Job) -> None:
        empty_outputs(self.layout, job)

    def start(self, job: Job) -> str:
        if job.args[:1] == ["unstartable"]:
            raise RunnerError("this job cannot start here")
        if job.run_id not in self.workers:
            self.started.append(job.run_id)
            self.workers[job.run_id] = WorkerStatus(WorkerState.RUNNING)
            program = job.args or ["hang"]
            if program[0] == "succeed":
                self.finish(job, 0)
            elif program[0] == "fail":
                self.finish(job, int(program[1]))
        return f"fake:{job.run_id}"

    def status(self, job: Job) -> WorkerStatus:
        return self.workers.get(job.run_id, GONE)

    def logs(self, job: Job, follow: bool = False):
        if job.log and self.layout.staging(job.log).exists():
            yield (self.layout.staging(job.log) / "log").read_bytes()

    def stop(self, job: Job) -> bool:
        if self.workers.get(job.run_id, WorkerStatus(WorkerState.MISSING)).state == WorkerState.RUNNING:
            self.stopped.append(job.run_id)
            self.workers[job.run_id] = WorkerStatus(WorkerState.FAILED, 143, "(container main) killed by SIGTERM")
        return True

    def cleanup(self, job: Job) -> None:
        self.workers.pop(job.run_id, None)

    # -- what the tests do to workers ---------------------------------------------------------------

    def finish(self, job: Job, code: int) -> None:
        for m in job.outputs:
            (self.layout.staging(m.knit_id) / "result").write_text(f"made by {job.run_id}")
        if job.log:
            with open(self.layout.staging(job.log) / "log", "a") as f:
                f.write(f"run {job.run_id} exits {code}\n")
        state = WorkerState.SUCCEEDED if code == 0 else WorkerState.FAILED
        self.workers[job.run_id] = WorkerStatus(state, code, "" if code == 0 else "(container main) Error")

    def vanish(self, run_id: str) -> None:
        self.workers.pop(run_id, None)
