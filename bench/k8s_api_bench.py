"""Kubernetes API requests per engine tick, by number of active runs (issue 12, point 6).

    .venv/bin/python bench/k8s_api_bench.py [--runs 1 8 32]

For each N, N runs of one plan are started by a real engine through the Kubernetes runner against
kmock's emulated API server (the Emulator of tests/k8s_cluster.py), their pods made running, and the
requests of one engine tick counted: the runner's snapshot (one list of Jobs and one of pods per
tick, whatever N) against per-run polling as it was (``max_age=0``: every status call lists
afresh, which is what the runner did per run before the snapshot). Long-lived log streams (one per
running pod, opened once) are not counted. Target: a constant number of requests per tick.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import apply, push  # noqa: E402
from k8s_cluster import Cluster  # noqa: E402

import knitfab.runners.k8s  # noqa: E402
from knitfab.engine import Engine  # noqa: E402
from knitfab.store.db import Store  # noqa: E402


def requests_per_tick(cluster: Cluster, runner, engine: Engine, ticks: int = 3) -> float:
    counts = []
    for _ in range(ticks):
        runner._snapshot = knitfab.runners.k8s.Snapshot()  # as after max_age: one refresh in this tick
        before = len(cluster.emulator)
        engine.tick()
        counts.append(sum(1 for r in list(cluster.emulator)[before:] if r.subresource != "log"))
    return statistics.median(counts)


def measure(n: int, max_age: float) -> float:
    cluster = Cluster()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "data")
            runner = cluster.runner(store.layout, max_age=max_age)
            engine = Engine(store, runner)
            apply(store, {"/in": ["kind:x"]}, {"/out": ["kind:y"]})
            for i in range(n):
                push(store, "kind:x", files={"n": str(i)})
            engine.run_until_idle()
            for job in cluster.list(cluster.batch, "job"):
                cluster.run(cluster.create_pod(job["metadata"]["name"], job), "training\n")
            engine.tick()  # to running: the followers open their streams
            result = requests_per_tick(cluster, runner, engine)
            store.close()
            return result
    finally:
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    print("running runs | requests/tick, snapshot | requests/tick, per-run polling | ratio")
    for n in args.runs:
        snapshot, polling = measure(n, float("inf")), measure(n, 0)
        print(f"{n:12d} | {snapshot:23.0f} | {polling:31.0f} | {polling / snapshot:5.1f}x")
    print("(median of 3 ticks; kmock's emulated API server on loopback; log streams not counted)")


if __name__ == "__main__":
    main()
