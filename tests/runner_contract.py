"""What every runner must do (the protocol in knitfab/runner.py), as a test mixin.

A test class mixes this in and provides ``runner`` (a fixture) and ``program(kind)``: the
(entrypoint, args) of a worker that *succeeds* (writing ``result`` into its output and a line
to its log), *fails* with exit code 3, or *hangs* until stopped.
"""

from __future__ import annotations

import time
import uuid

from helpers import wait_for

from knitfab.runners.protocol import Job, Mount, WorkerState


class RunnerContract:
    def program(self, kind: str) -> tuple[list[str], list[str]]:
        raise NotImplementedError

    def job(self, store, kind: str) -> Job:
        dataset = str(uuid.uuid4())
        store.layout.data(dataset).mkdir(parents=True)
        (store.layout.data(dataset) / "rows.csv").write_text("1,2\n")
        entrypoint, args = self.program(kind)
        return Job(
            run_id=str(uuid.uuid4()),
            plan_id="plan",
            image="example.com/contract:v1",
            entrypoint=entrypoint,
            args=args,
            inputs=[Mount("/in/dataset", dataset)],
            outputs=[Mount("/out/result", str(uuid.uuid4()))],
            log=str(uuid.uuid4()),
            resources={"cpu": "1", "memory": "1Gi"},
        )

    def launch(self, runner, store, kind: str) -> Job:
        job = self.job(store, kind)
        runner.prepare(job)
        job.worker = runner.start(job)
        return job

    def ended(self, runner, job):
        return wait_for(
            lambda: (s := runner.status(job)).state not in (WorkerState.STARTING, WorkerState.RUNNING) and s
        )

    def test_prepare_gives_empty_writable_outputs_every_time(self, runner, store):
        job = self.job(store, "succeed")
        runner.prepare(job)
        leftover = store.layout.staging(job.outputs[0].knit_id) / "leftover"
        leftover.write_text("from an earlier attempt")
        runner.prepare(job)
        assert store.layout.staging(job.outputs[0].knit_id).is_dir()
        assert not leftover.exists()

    def test_a_worker_that_succeeds(self, runner, store):
        job = self.launch(runner, store, "succeed")
        status = self.ended(runner, job)
        assert (status.state, status.code) == (WorkerState.SUCCEEDED, 0)
        assert (store.layout.staging(job.outputs[0].knit_id) / "result").exists()
        assert b"".join(runner.logs(job))

    def test_a_worker_that_fails(self, runner, store):
        job = self.launch(runner, store, "fail")
        status = self.ended(runner, job)
        assert (status.state, status.code) == (WorkerState.FAILED, 3)
        assert status.message

    def test_a_worker_is_stopped_on_request(self, runner, store):
        job = self.launch(runner, store, "hang")
        assert runner.status(job).state in (WorkerState.STARTING, WorkerState.RUNNING)
        deadline = time.monotonic() + 30
        while not runner.stop(job):
            assert time.monotonic() < deadline, "the worker did not stop"
        assert runner.status(job).state not in (WorkerState.STARTING, WorkerState.RUNNING)
        runner.cleanup(job)

    def test_start_again_is_the_same_worker(self, runner, store):
        job = self.launch(runner, store, "hang")
        assert runner.start(job) == job.worker
        wait_for(lambda: runner.stop(job), timeout=30)
        runner.cleanup(job)

    def test_a_worker_never_started_is_missing(self, runner, store):
        job = self.job(store, "succeed")
        assert runner.status(job).state == WorkerState.MISSING
        assert runner.stop(job) is True

    def test_cleanup_forgets_the_worker(self, runner, store):
        job = self.launch(runner, store, "succeed")
        self.ended(runner, job)
        runner.cleanup(job)
        assert runner.status(job).state == WorkerState.MISSING
