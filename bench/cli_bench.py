"""``knit`` start-up: how long ``knit version`` and ``knit data find`` take, as a user runs them.

    .venv/bin/python bench/cli_bench.py [--runs 20]

Each command runs ``--runs`` times as a fresh process (``python -m knit``, the console script's
code path), alternating with the floor: the same interpreter starting and importing nothing
(``python -c pass``, what any Python CLI pays). ``knit data find`` asks a real ``knitfab serve``
on loopback holding 100 Data. Prints medians of wall and CPU time (the process and
its children: a loaded machine's wall clock mostly measures the wait for a core). Target (issue 14): < 100 ms.
The modules each command imports are listed with ``python -X importtime -m knit version``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_bench import fill_data  # noqa: E402
from transfer_bench import start_server  # noqa: E402

from knitfab.store.db import Store  # noqa: E402


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall ms, CPU ms of the process and its children): CPU time shows the cost on a loaded
    machine, where the wall clock mostly measures the queue for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def compare(label: str, argv: list[str], runs: int, env: dict, cwd: Path) -> None:
    floor_argv = [sys.executable, "-c", "pass"]
    ours, floor = [], []
    timed(argv, env, cwd)  # warm the page cache
    for _ in range(runs):
        ours.append(timed(argv, env, cwd))
        floor.append(timed(floor_argv, env, cwd))
    o, f = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in floor)
    oc, fc = statistics.median(c for _, c in ours), statistics.median(c for _, c in floor)
    verdict = "meets" if o < 100 else "MISSES"
    print(f"  {label:<28} wall {o:6.1f} ms (python -c pass {f:4.1f} ms)  CPU {oc:6.1f} ms (python -c pass {fc:4.1f} ms)"
          f"   target < 100 ms wall: {verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, data_dir = Path(tmp) / "home", Path(tmp) / "knitfab"
        home.mkdir()
        store = Store(data_dir)
        fill_data(store, 100)
        store.close()
        proc, url = start_server(data_dir)
        try:
            env = {**os.environ, "HOME": str(home)}
            knit = [sys.executable, "-m", "knit"]
            (home / "handout").write_text(f"apiRoot: {url}\ncert: {{}}\n")
            subprocess.run([*knit, "init", str(home / "handout")], env=env, cwd=home, check=True, capture_output=True)
            load = os.getloadavg()[0]
            print(f"{args.runs} runs each, alternated with the floor; {os.cpu_count()} CPUs, load {load:.1f}")
            compare("knit version", [*knit, "version"], args.runs, env, home)
            compare("knit data find -t project:p7", [*knit, "data", "find", "-t", "project:p7"], args.runs, env, home)
        finally:
            proc.terminate()
            proc.wait()
            proc.stderr.close()


if __name__ == "__main__":
    main()
