"""The Kubernetes runner's load on the API server: the requests of an engine tick do not grow with
the number of runs.
"""

from __future__ import annotations

import pytest

import knitfab.runners.k8s

pytest_plugins = ["k8s_helpers"]  # the cluster, runner, clock and timed fixtures


@pytest.mark.slow
class TestApiLoad:
    """The engine's watch over many runs reads one snapshot: the requests of a tick do not grow
    with the number of runs (it was 2–3 per run per tick, 60–100 requests/s at 32 runs)."""

    RUNS = 32

    def requests_per_tick(self, cluster, runner, engine) -> list:
        runner._snapshot = knitfab.runners.k8s.Snapshot()  # as after max_age: one refresh in this tick
        before = len(cluster.emulator)
        engine.tick()
        return [
            f"{r.method.value} {r.resource.plural}{'/' + r.subresource if r.subresource else ''}"
            for r in list(cluster.emulator)[before:]
        ]

    def test_requests_per_tick_for_32_active_runs(self, cluster, store):
        from helpers import apply, push

        from knitfab.engine import Engine

        runner = cluster.runner(store.layout, max_age=float("inf"))
        engine = Engine(store, runner)
        apply(store, {"/in": ["kind:x"]}, {"/out": ["kind:y"]})
        for i in range(self.RUNS):
            push(store, "kind:x", files={"n": str(i)})
        engine.run_until_idle()
        jobs = cluster.list(cluster.batch, "job")
        assert len(jobs) == self.RUNS
        pods = [cluster.create_pod(j["metadata"]["name"], j) for j in jobs]

        waiting = self.requests_per_tick(cluster, runner, engine)  # all 32 pending: events are read too
        assert len(waiting) == 3, waiting
        for pod in pods:
            cluster.run(pod, "training\n")
        self.requests_per_tick(cluster, runner, engine)  # to running: the log followers start
        running = self.requests_per_tick(cluster, runner, engine)
        assert sorted(running) == ["GET jobs", "GET pods"]
        print(f"\nAPI requests per engine tick, {self.RUNS} runs: {len(waiting)} while pending, {len(running)} running")
        statuses = store.column("SELECT status FROM run r JOIN plan p USING (plan_id) WHERE p.name IS NULL")
        assert statuses == ["running"] * self.RUNS
