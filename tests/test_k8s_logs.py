"""The Kubernetes runner copying pod logs into the run's log Data (knitfab/runners/k8slog.py):
following, resuming a broken stream, retries at cleanup, a restarted server.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers import wait_for
from k8s_helpers import kill_follower, log_of, running, started

from knitfab.runners.protocol import WorkerState

pytest_plugins = ["k8s_helpers"]  # the cluster, runner, clock and timed fixtures


class TestLogs:
    def test_the_log_data_fills_while_the_worker_runs(self, cluster, runner, store):
        job, pod = running(cluster, runner, "line 1\n")
        wait_for(lambda: log_of(store, job) == b"line 1\n")
        cluster.write_log(pod, "line 2\n")
        wait_for(lambda: log_of(store, job) == b"line 1\nline 2\n")

    def test_a_broken_stream_resumes_from_the_last_line_without_repeating_it(self, cluster, runner, store):
        cluster.emulator.cut_streams = True  # every follow request ends after what there is
        job, pod = running(cluster, runner, "line 1\nline 2\n")
        wait_for(lambda: log_of(store, job) == b"line 1\nline 2\n")
        cluster.emulator.log_errors += [500, 503]
        cluster.write_log(pod, "line 3\n")
        wait_for(lambda: log_of(store, job) == b"line 1\nline 2\nline 3\n")
        since = [r.params.get("sinceSeconds") for r in cluster.emulator if r.subresource == "log"]
        assert since[0] is None and all(since[1:]), "reconnects ask only for the recent lines"

    def test_logs_reads_the_log_data_and_follows_it_until_the_worker_ends(self, cluster, runner):
        job, pod = running(cluster, runner, "line 1\n")
        chunks = runner.logs(job, follow=True)
        assert next(chunks) == b"line 1\n"
        cluster.write_log(pod, "line 2\n")
        assert next(chunks) == b"line 2\n"
        cluster.terminate(pod, 0, "Completed")
        runner.status(job)
        assert list(chunks) == []

    def test_following_a_starting_worker_waits_for_it(self, cluster, runner):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        threading.Timer(0.2, cluster.run, args=(pod, "late\n")).start()
        chunks = runner.logs(job, follow=True)
        assert next(chunks) == b"late\n"
        chunks.close()

    def test_cleanup_completes_the_log_and_deletes_the_job(self, cluster, runner, store):
        job, pod = running(cluster, runner, "line 1\n")
        cluster.write_log(pod, "line 2\n")
        cluster.terminate(pod, 0, "Completed")
        assert runner.stop(job) is True  # it has ended: nothing to stop, the Job stays for cleanup
        runner.cleanup(job)
        assert log_of(store, job) == b"line 1\nline 2\n"
        assert cluster.job(job.worker) is None
        assert runner.status(job).state == WorkerState.MISSING
        runner.cleanup(job)  # again, after a crash: nothing left to do, and the log stays
        assert log_of(store, job) == b"line 1\nline 2\n"

    def test_a_restarted_server_carries_on_the_log_without_writing_it_twice(self, cluster, runner, store):
        job, pod = running(cluster, runner, "before\n")
        wait_for(lambda: log_of(store, job) == b"before\n")
        kill_follower(cluster, runner, job)  # the server goes down
        cluster.write_log(pod, "during\n")
        restarted = cluster.runner(store.layout)
        assert restarted.status(job).state == WorkerState.RUNNING
        cluster.write_log(pod, "after\n")
        wait_for(lambda: log_of(store, job) == b"before\nduring\nafter\n")

    @pytest.mark.parametrize("status", [503, 429])
    def test_errors_of_the_log_endpoint_at_cleanup_are_retried_for_a_bounded_time(
        self, cluster, timed, store, clock, status
    ):
        job, pod = running(cluster, timed, "line 1\n")
        wait_for(lambda: log_of(store, job) == b"line 1\n")
        kill_follower(cluster, timed, job)  # it misses the end, which cleanup must fetch
        cluster.write_log(pod, "line 2\n")
        cluster.terminate(pod, 0, "Completed")
        cluster.emulator.log_errors += [status] * 1000
        began = time.monotonic()
        with pytest.raises(RuntimeError, match="cannot be read yet"):
            timed.cleanup(job)  # the engine tries again next tick
        assert cluster.job(job.worker) is not None
        clock.advance(timed.deadlines.log)
        timed.cleanup(job)  # past the deadline: the run finishes with the log it has
        assert time.monotonic() - began < 10
        assert cluster.job(job.worker) is None
        assert log_of(store, job) == b"line 1\n"

    def test_a_log_error_at_cleanup_that_passes_loses_nothing(self, cluster, runner, store):
        job, pod = running(cluster, runner, "line 1\n")
        wait_for(lambda: log_of(store, job) == b"line 1\n")
        kill_follower(cluster, runner, job)
        cluster.write_log(pod, "line 2\n")
        cluster.terminate(pod, 0, "Completed")
        cluster.emulator.log_errors += [503]
        with pytest.raises(RuntimeError):
            runner.cleanup(job)
        runner.cleanup(job)
        assert log_of(store, job) == b"line 1\nline 2\n"

    def test_stop_deletes_a_running_worker_and_its_log_so_far_stays(self, cluster, runner, store):
        job, pod = running(cluster, runner, "working\n")
        wait_for(lambda: log_of(store, job) == b"working\n")
        assert runner.stop(job) is False
        assert cluster.job(job.worker)["metadata"]["deletionTimestamp"]
        assert runner.stop(job) is False  # still being deleted: the pod is still there
        cluster.collect(cluster.job(job.worker))
        assert runner.stop(job) is True
        runner.cleanup(job)
        assert log_of(store, job) == b"working\n"


class TestLogPosition:
    def test_a_position_left_by_an_earlier_attempt_never_pads_the_new_log(self, cluster, runner, store):
        job, pod = running(cluster, runner, "first attempt\n")
        wait_for(lambda: log_of(store, job) == b"first attempt\n")
        kill_follower(cluster, runner, job)  # the server dies before cleanup forgets the position
        restarted = cluster.runner(store.layout)
        restarted.prepare(job)  # a retry: the log Data is empty again
        assert log_of(store, job) == b""
        assert not (store.layout.worker(job.run_id) / "log.position").exists()

    def test_a_stale_position_is_dropped_instead_of_padding_the_file(self, tmp_path):
        from knitfab.runners.k8slog import LogCopy, Position

        (tmp_path / "log").write_bytes(b"")
        Position(ns=10**18, same=1, size=100).save(tmp_path / "log.position")
        copy = LogCopy(tmp_path / "log", tmp_path / "log.position")
        assert (tmp_path / "log").read_bytes() == b"" and copy.since_seconds(0) is None
        copy.feed([b"2024-05-01T10:00:00.5Z hello\n"], flush=True)
        assert (tmp_path / "log").read_bytes() == b"hello\n"
