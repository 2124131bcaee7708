"""Jobs, fixtures and steps shared by the tests of the Kubernetes runner (tests/test_k8s_*.py).

A test module uses the fixtures with ``pytest_plugins = ["k8s_helpers"]``: ``cluster`` (a fresh
emulated API server), ``runner`` (a KubernetesRunner on it), ``clock`` and ``timed`` (a runner on a
clock the test moves).
"""

from __future__ import annotations

import time
import uuid

import pytest
from k8s_cluster import Cluster

from knitfab.runners.protocol import Job, Mount, WorkerState


def a_job(**fields) -> Job:
    return Job(
        **{
            "run_id": str(uuid.uuid4()),
            "plan_id": str(uuid.uuid4()),
            "image": "registry.example.com:5000/train:v1",
            "entrypoint": ["python", "-u", "main.py"],
            "args": ["--epochs", "3"],
            "inputs": [Mount("/in/dataset", "in-1"), Mount("/in/model", "in-2")],
            "outputs": [Mount("/out/model", "out-1")],
            "log": "log-1",
            "resources": {"cpu": "1", "memory": "1Gi"},
            **fields,
        }
    )


def as_tuple(status):
    return status.state, status.code, status.message


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
def runner(cluster, store):
    return cluster.runner(store.layout)


def started(runner) -> Job:
    """A new run's worker, just created."""
    job = a_job()
    runner.prepare(job)
    job.worker = runner.start(job)
    return job


class Clock:
    """Wall time that a test moves forward (the runner's ``clock``): deadlines without sleeping."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float):
        self.offset += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def timed(cluster, store, clock):
    """A runner on the test's clock."""
    return cluster.runner(store.layout, clock=clock)


def pending_pod(cluster, runner, scheduled: bool = True) -> tuple[Job, str]:
    job = started(runner)
    pod = cluster.create_pod(job.worker)
    if scheduled:
        cluster.schedule(pod)
    return job, pod


def log_of(store, job) -> bytes:
    return (store.layout.staging(job.log) / "log").read_bytes()


def running(cluster, runner, text: str = "") -> tuple[Job, str]:
    job = started(runner)
    pod = cluster.create_pod(job.worker)
    cluster.run(pod, text)
    assert runner.status(job).state == WorkerState.RUNNING  # the engine's watch: the follower starts
    return job, pod


def kill_follower(cluster, runner, job):
    """Stop the runner's log follower and wait until it is gone (its stream broken off)."""
    follower = runner._logs.followers[job.run_id]
    follower.stop()
    cluster.emulator.cut_streams = True
    follower.join(5)
    assert not follower.is_alive()
    cluster.emulator.cut_streams = False
