"""What confinement costs a run: start-to-exit time of a trivial run, confined and not.

    .venv/bin/python bench/sandbox_bench.py [--runs 20]

Runs ``true`` in the local runner's sandbox N times each way and prints the medians: the bare
bubblewrap command line (as the runner had it before runs were confined: the peer, measured in
the same run) and the full worker command (cgroups entered, bind sources staged by the root
bwrap, privileges dropped, rlimits). Making the cgroups and giving the inputs to the run's uid
happen in the server, before the clock starts. Also prints which uid runs execute as and what
enforces each limit on this host.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knitfab.runners.limits import remove_cgroups  # noqa: E402
from knitfab.runners.local import LocalRunner  # noqa: E402
from knitfab.runners.protocol import Job, Mount  # noqa: E402
from knitfab.store.layout import Layout  # noqa: E402


def job(layout: Layout) -> Job:
    dataset = str(uuid.uuid4())
    layout.data(dataset).mkdir(parents=True)
    (layout.data(dataset) / "rows.csv").write_text("1,2\n")
    return Job(run_id=str(uuid.uuid4()), plan_id="bench", image="bench:v1", entrypoint=["true"],
               inputs=[Mount("/in", dataset)], outputs=[Mount("/out", str(uuid.uuid4()))],
               resources={"cpu": "1", "memory": "256Mi"})  # fmt: skip


def timed(runner: LocalRunner, confined: bool) -> float:
    j = job(runner.layout)
    runner.prepare(j)
    workdir = runner.layout.worker(j.run_id)
    workdir.mkdir(parents=True)
    sandbox = runner.sandbox(j)
    if not confined:  # the sandbox as it was: bwrap straight from the server's user
        sandbox = [a for a in sandbox if a != "--disable-userns"]
    command = runner.confine(j, sandbox) if confined else sandbox
    started = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    remove_cgroups(runner._cgroups_of(j))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        layout = Layout(tmp)
        layout.create()
        runner = LocalRunner(layout)
        bare = [timed(runner, False) for _ in range(args.runs)]
        full = [timed(runner, True) for _ in range(args.runs)]
    print(f"runs execute as uid {runner.user.uid} (server uid {__import__('os').geteuid()})")
    print(f"limits enforced by: {runner.cgroups.enforced()}")
    print(f"trivial run, median of {args.runs}: bare bwrap {statistics.median(bare) * 1000:.1f} ms, "
          f"confined {statistics.median(full) * 1000:.1f} ms "
          f"(+{(statistics.median(full) - statistics.median(bare)) * 1000:.1f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
