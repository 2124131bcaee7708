"""The Kubernetes runner starting workers and reading their status (knitfab/runners/k8s.py,
k8sstatus.py): queueing, waiting with a reason, failing past a deadline, a restarted server, and
the run's message in the store. Driven through the real ``kubernetes`` client against kmock's
emulated API server (tests/k8s_cluster.py).
"""

from __future__ import annotations

import uuid

import kmock
import pytest
from helpers import wait_for
from k8s_cluster import JOBS, NS, PVC
from k8s_helpers import a_job, as_tuple, pending_pod, started

from knitfab.runners.k8sjob import job_manifest, job_name
from knitfab.runners.protocol import RunnerError, WorkerState

pytest_plugins = ["k8s_helpers"]  # the cluster, runner, clock and timed fixtures


class TestStart:
    def test_start_creates_the_job_and_returns_its_name(self, cluster, runner):
        job = started(runner)
        assert job.worker == job_name(job.run_id)
        created = cluster.job(job.worker)
        assert created["spec"] == job_manifest(job, NS, PVC, priority_class="knit-worker-priority")["spec"]
        assert created["metadata"]["labels"]["knit/worker.runid"] == job.run_id

    def test_prepare_makes_empty_outputs_anyone_may_write(self, runner, store):
        job = a_job()
        runner.prepare(job)
        assert store.layout.staging("out-1").stat().st_mode & 0o777 == 0o777
        assert (store.layout.staging("log-1") / "log").read_bytes() == b""

    def test_a_job_the_api_server_rejects_is_a_runner_error(self, cluster, runner):
        cluster.emulator[kmock.action.CREATE, JOBS] << kmock.KubernetesError(
            422, "Invalid", 'Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value'
        )
        with pytest.raises(RunnerError, match="containers\\[0\\].image: Required value"):
            started(runner)

    def test_a_job_still_being_deleted_is_not_taken_for_a_new_attempt(self, cluster, runner):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        cluster.run(pod)
        assert runner.stop(job) is False  # deleting, in the foreground
        with pytest.raises(RuntimeError, match="still being deleted"):
            runner.start(job)


class TestStatus:
    def test_from_start_to_success(self, cluster, runner):
        job = started(runner)
        assert runner.status(job).state == WorkerState.STARTING  # no pod yet
        pod = cluster.create_pod(job.worker)
        assert runner.status(job).state == WorkerState.STARTING
        cluster.run(pod)
        assert runner.status(job).state == WorkerState.RUNNING
        cluster.terminate(pod, 0, "Completed")
        assert as_tuple(runner.status(job)) == (WorkerState.SUCCEEDED, 0, "")

    @pytest.mark.parametrize(("code", "reason"), [(3, "Error"), (137, "OOMKilled")])
    def test_the_exit_code_and_reason_of_the_main_container(self, cluster, runner, code, reason):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        cluster.run(pod)
        cluster.terminate(pod, code, reason)
        assert as_tuple(runner.status(job)) == (WorkerState.FAILED, code, f"(container main) {reason}")

    def test_a_job_that_failed_without_its_pod(self, cluster, runner):
        job = started(runner)
        cluster.end_job(job.worker, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        assert as_tuple(runner.status(job)) == (
            WorkerState.FAILED,
            254,
            f"(job {job.worker}) [DeadlineExceeded] Job was active longer than specified deadline",
        )

    def test_a_vanished_job_is_missing(self, cluster, runner):
        job = started(runner)
        cluster.batch.delete_namespaced_job(job.worker, NS)
        assert as_tuple(runner.status(job)) == (WorkerState.MISSING, 254, "worker for the run is not found")

    def test_a_pod_deleted_mid_run_fails_the_run_with_the_jobs_reason_and_keeps_its_log(self, cluster, runner, store):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        cluster.run(pod, "epoch 1\n")
        assert runner.status(job).state == WorkerState.RUNNING
        wait_for(lambda: (store.layout.staging(job.log) / "log").read_bytes() == b"epoch 1\n")
        cluster.core.delete_namespaced_pod(pod, NS)
        assert runner.status(job).state == WorkerState.STARTING  # the Job controller has yet to notice
        cluster.end_job(job.worker, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        assert as_tuple(runner.status(job)) == (
            WorkerState.FAILED,
            254,
            f"(job {job.worker}) [BackoffLimitExceeded] Job has reached the specified backoff limit",
        )
        runner.cleanup(job)
        assert (store.layout.staging(job.log) / "log").read_bytes() == b"epoch 1\n"

    def test_an_unschedulable_pod_waits_long_past_the_old_300_seconds(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed, scheduled=False)
        cluster.event("Pod", pod, "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.")
        for _ in range(3):
            clock.advance(3600)
            assert as_tuple(timed.status(job)) == (
                WorkerState.STARTING,
                None,
                f"waiting: (pod {pod}) [FailedScheduling] 0/1 nodes are available: 1 Insufficient cpu.",
            )
        cluster.schedule(pod)
        cluster.run(pod)
        assert as_tuple(timed.status(job)) == (WorkerState.RUNNING, None, "")

    def test_a_job_that_cannot_make_its_pod_says_why_and_keeps_waiting(self, cluster, timed, clock):
        job = started(timed)
        cluster.event("Job", job.worker, "FailedCreate", "from an earlier Job of this name", uid=str(uuid.uuid4()))
        assert as_tuple(timed.status(job)) == (WorkerState.STARTING, None, "")
        forbidden = 'pods "worker-run-x" is forbidden: error looking up service account knitfab/trainer'
        cluster.event("Job", job.worker, "FailedCreate", forbidden)
        clock.advance(24 * 3600)
        assert as_tuple(timed.status(job)) == (
            WorkerState.STARTING,
            None,
            f"waiting: (job {job.worker}) [FailedCreate] {forbidden}",
        )
        cluster.create_pod(job.worker)  # the controller's retry works once the account exists
        assert timed.status(job).message == ""

    def test_an_image_that_cannot_be_pulled_fails_after_a_bounded_back_off(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed)
        cluster.wait(pod, "ContainerCreating", "")
        assert as_tuple(timed.status(job)) == (WorkerState.STARTING, None, "")
        back_off = 'Back-off pulling image "registry.example.com:5000/train:v1"'
        cluster.wait(pod, "ImagePullBackOff", back_off)
        assert as_tuple(timed.status(job)) == (
            WorkerState.STARTING,
            None,
            f"waiting: (pod {pod}) [ImagePullBackOff] {back_off}",
        )
        clock.advance(timed.deadlines.pull)
        assert as_tuple(timed.status(job)) == (WorkerState.FAILED, 255, f"(pod {pod}) [ImagePullBackOff] {back_off}")

    def test_a_pull_failure_event_fails_after_the_same_back_off(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed)
        cluster.event("Pod", pod, "Pulling", "Pulling image", type="Normal")
        cluster.event("Pod", pod, "Failed", 'Failed to pull image "registry.example.com:5000/train:v1": not found')
        assert timed.status(job).state == WorkerState.STARTING
        clock.advance(timed.deadlines.pull)
        assert as_tuple(timed.status(job)) == (
            WorkerState.FAILED,
            255,
            f'(pod {pod}) [Failed] Failed to pull image "registry.example.com:5000/train:v1": not found',
        )

    @pytest.mark.parametrize(
        ("reason", "message"),
        [
            ("CreateContainerConfigError", 'secret "db-password" not found'),
            ("InvalidImageName", 'Failed to apply default image tag "Train:v1": invalid reference format'),
        ],
    )
    def test_what_can_never_start_fails_at_once(self, cluster, runner, reason, message):
        job, pod = pending_pod(cluster, runner)
        cluster.wait(pod, reason, message)
        assert as_tuple(runner.status(job)) == (WorkerState.FAILED, 255, f"(pod {pod}) [{reason}] {message}")

    def test_a_volume_that_cannot_be_mounted_fails_past_its_deadline(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed)
        message = 'MountVolume.SetUp failed for volume "data": mount failed: exit status 32'
        cluster.event("Pod", pod, "FailedMount", message)
        assert timed.status(job).message == f"waiting: (pod {pod}) [FailedMount] {message}"
        clock.advance(timed.deadlines.mount)
        assert as_tuple(timed.status(job)) == (WorkerState.FAILED, 255, f"(pod {pod}) [FailedMount] {message}")

    def test_a_pod_of_an_earlier_job_of_the_same_name_is_not_this_worker(self, cluster, runner):
        job = started(runner)
        old = cluster.create_pod(job.worker)
        cluster.run(old)
        cluster.terminate(old, 1, "Error")
        cluster.batch.delete_namespaced_job(job.worker, NS)  # its pod lingers
        assert runner.start(job) == job.worker
        assert runner.status(job).state == WorkerState.STARTING


class TestRestart:
    def test_a_new_runner_finds_the_worker_by_its_handle(self, cluster, runner, store):
        job = started(runner)
        cluster.run(cluster.create_pod(job.worker))
        restarted = cluster.runner(store.layout)
        assert restarted.status(job).state == WorkerState.RUNNING
        assert restarted.find_workers() == {job.run_id: job.worker}

    def test_reconcile_deletes_the_workers_of_runs_the_store_no_longer_follows(self, cluster, runner, store):
        kept, stray = started(runner), started(runner)
        other_server = cluster.runner(store.layout, pvc="another-pvc")
        other = started(other_server)
        restarted = cluster.runner(store.layout)
        assert restarted.reconcile({kept.run_id}) == [stray.worker]
        assert restarted.find_workers() == {kept.run_id: kept.worker}
        assert cluster.job(other.worker) is not None  # not this server's worker


class TestTheRunsMessage:
    def test_a_waiting_run_says_why_in_its_message_until_it_runs(self, cluster, store):
        from helpers import apply, push

        from knitfab.engine import Engine
        from knitfab.store import runs

        runner = cluster.runner(store.layout)
        engine = Engine(store, runner)
        apply(store, {"/in": ["kind:x"]}, {"/out": ["kind:y"]}, service_account="trainer")
        push(store, "kind:x")
        engine.run_until_idle()
        (run_id,) = store.column("SELECT run_id FROM run r JOIN plan p USING (plan_id) WHERE p.name IS NULL")
        worker = job_name(run_id)
        cluster.event("Job", worker, "FailedCreate", "error looking up service account knitfab/trainer: not found")
        engine.tick()
        shown = runs.show_run(store, run_id)
        assert shown.status == "starting" and shown.exit_code is None
        assert shown.message == (
            f"waiting: (job {worker}) [FailedCreate] error looking up service account knitfab/trainer: not found"
        )
        cluster.run(cluster.create_pod(worker))
        engine.tick()
        shown = runs.show_run(store, run_id)
        assert shown.status == "running" and shown.message == ""
