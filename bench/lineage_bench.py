"""Lineage in one request: ``knit data lineage`` at depth 10 and of a 1,000-node graph, at 10^6 Data.

    .venv/bin/python bench/lineage_bench.py [--data 1000000] [--cache DIR] [--runs 7]

The store holds ``--data`` uploaded Data (five tags each, as bench/engine_bench.py writes them)
and a lineage made by the real engine: a chain of 10 plans, each reading the previous one's output
and one shared parameter Data, run for 45 inputs (an instant in-process runner stands in for the
containers), so one input has 10 steps downstream and the parameter a connected graph of about
1,000 nodes. Built once and kept in ``--cache`` (say whether it was).

Measured, medians of ``--runs``, alternated:
* the server's answer in process (``/api/x/lineage?format=json``'s work): the batched walk
  (``store/lineage.py`` then two batches of details) next to the node-by-node walk it replaced;
* ``knit data lineage`` as a user runs it (a fresh process against a real ``knitfab serve``):
  ``-n 10`` from the input, ``-n all`` from the parameter; next to Knitfab's own way, one request
  per node (``KnitClient``'s fallback against a Knitfab server), timed in-process over HTTP.

Targets (issue 14): depth 10 at 10^6 Data answered in < 50 ms; ``knit data lineage -n all`` of
1,000 nodes in < 1 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_bench import median_ms  # noqa: E402
from engine_bench import fill_data  # noqa: E402
from transfer_bench import start_server  # noqa: E402

from knit import graphs  # noqa: E402
from knit.client import KnitClient  # noqa: E402
from knitfab.console.graphs import StoreSource, data_nodes  # noqa: E402
from knitfab.engine import Engine  # noqa: E402
from knitfab.planspec import parse_plan_spec  # noqa: E402
from knitfab.runners.protocol import GONE, Job, Runner, WorkerState, WorkerStatus, empty_outputs  # noqa: E402
from knitfab.store import data, plans  # noqa: E402
from knitfab.store.db import Store  # noqa: E402
from knitfab.tags import parse_tag  # noqa: E402

CHAIN, INPUTS = 10, 45


class InstantRunner(Runner):
    """A runner whose workers succeed as soon as they start, each writing one file."""

    capacity = None  # no resource limit to fit runs in

    def __init__(self, store: Store):
        self.layout, self.done = store.layout, set()

    def prepare(self, job: Job) -> None:
        empty_outputs(self.layout, job)

    def start(self, job: Job) -> str:
        for m in job.outputs:
            (self.layout.staging(m.knit_id) / "out").write_text(job.run_id)
        self.done.add(job.run_id)
        return job.run_id

    def status(self, job: Job) -> WorkerStatus:
        return WorkerStatus(WorkerState.SUCCEEDED, 0, "") if job.run_id in self.done else GONE

    def logs(self, job, follow=False):
        return iter(())

    def stop(self, job: Job) -> bool:
        return True

    def cleanup(self, job: Job) -> None:
        self.done.discard(job.run_id)

    def check_plan(self, image, version, entrypoint) -> None:
        pass

    def reconcile(self, live):
        return []


def push(store: Store, *texts: str) -> str:
    run_id, knit_id = data.begin_upload(store)
    store.layout.staging(knit_id).mkdir(parents=True)
    store.layout.publish(knit_id)
    data.end_upload(store, run_id, ok=True)
    data.change_tags(store, knit_id, add=[parse_tag(t) for t in texts])
    return knit_id


def build(data_dir: Path, n: int) -> None:
    store = Store(data_dir)
    (have,) = store.one("SELECT COUNT(*) FROM data")
    fill_data(store, n - have)  # a copy of another bench's store is topped up
    for step in range(CHAIN):
        doc = {
            "image": f"bench/step{step}:v1",
            "entrypoint": ["true"],
            "inputs": [
                {"path": "/in/x", "tags": [f"lineage:step{step}"]},
                {"path": "/in/p", "tags": ["lineage:param"]},
            ],
            "outputs": [{"path": "/out/x", "tags": [f"lineage:step{step + 1}"]}],
        }
        plans.apply_plan(store, parse_plan_spec(doc))
    push(store, "lineage:param", "lineage:root")
    for i in range(INPUTS):
        push(store, "lineage:step0", f"lineage:input{i}")
    engine = Engine(store, InstantRunner(store))
    while engine.tick():
        pass
    statuses = store.all(
        "SELECT status, COUNT(*) FROM run JOIN plan USING (plan_id) WHERE image LIKE 'bench/step%' GROUP BY status"
    )
    assert statuses == [("done", CHAIN * INPUTS)], statuses
    store.close()


def ensure_store(cache: Path | None, n: int, tmp: Path) -> tuple[Path, str]:
    data_dir = (cache or tmp) / f"lineage-{n}-v1"
    state = "cached"
    if not (data_dir / "built").exists():
        state = "built now"
        build(data_dir, n)
        (data_dir / "built").write_text("")
    return data_dir, state


def one(store: Store, tag: str) -> str:
    (found,) = data.find_knit_ids(store, [parse_tag(tag)])
    return found


def in_process(store: Store, start: str, depth: int | None, runs: int) -> tuple[float, float, int]:
    def batched():
        return data_nodes(store, start, 0, depth)

    def node_by_node():
        with store.read():
            return graphs.lineage(StoreSource(store), start, 0, depth)

    return median_ms(batched, runs), median_ms(node_by_node, runs), len(batched()["data"]) + len(batched()["runs"])


def cli_ms(knit: list[str], args: list[str], env: dict, home: Path, runs: int) -> float:
    def run():
        subprocess.run([*knit, *args], env=env, cwd=home, check=True, stdout=subprocess.DEVNULL)

    return median_ms(run, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, help="keep the built store here for the next run")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, state = ensure_store(args.cache, args.data, Path(tmp))
        store = Store(data_dir)
        root, first = one(store, "lineage:root"), one(store, "lineage:input0")
        print(f"{args.data} Data + a {CHAIN}-plan lineage of {INPUTS} inputs (store {state}, {data_dir});"
              f" {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; medians of {args.runs}")  # fmt: skip
        print("server's work in process (format=json): batched | node by node (the old walk)")
        for label, start, depth, target in (("depth 10", first, 10, 50), ("all", root, None, 1000)):
            batched, walked, nodes = in_process(store, start, depth, args.runs)
            print(f"  {label:<9} {nodes:5d} nodes  {batched:8.1f} ms | {walked:8.1f} ms  ({walked / batched:.1f}x)"
                  f"  target < {target} ms: {'meets' if batched < target else 'MISSES'}")  # fmt: skip
        store.close()
        home = Path(tmp) / "home"
        home.mkdir()
        proc, url = start_server(data_dir)
        try:
            env = {**os.environ, "HOME": str(home)}
            knit = [sys.executable, "-m", "knit"]
            (home / "handout").write_text(f"apiRoot: {url}\ncert: {{}}\n")
            subprocess.run([*knit, "init", str(home / "handout")], env=env, cwd=home, check=True, capture_output=True)
            client = KnitClient(url)
            print("over HTTP, KnitClient: one request | Knitfab's walk, one request per node; and the knit CLI")
            for label, start, steps, depth in (("-n 10", first, "10", 10), ("-n all", root, "all", None)):
                ours = median_ms(lambda: client.lineage(start, False, True, depth), args.runs)  # noqa: B023
                walk = median_ms(lambda: graphs.data_lineage(client, start, False, True, depth), args.runs)  # noqa: B023
                cli = cli_ms(knit, ["data", "lineage", "-d", "-n", steps, start], env, home, args.runs)
                print(f"  {label:<9} {ours:8.1f} ms | {walk:8.1f} ms  ({walk / ours:.1f}x);"
                      f"  knit data lineage -d -n {steps} (a fresh process): {cli:.0f} ms")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
