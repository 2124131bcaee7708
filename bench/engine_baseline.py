"""This build's runs against another checkout's, alternated in one run.

    .venv/bin/python bench/engine_baseline.py --baseline /path/to/old/checkout [--rounds 3] [--data 100000]
        [--samples 20] [--burst 300]

The HTTP half of ``engine_bench`` (push 2xx -> process start, then a burst of trivial runs until
all are seen done) against this checkout's ``knitfab serve`` and the other's, each on its own
copy of one store filled once (``--data`` done Data, each with its run: the other checkout must
read this store's schema). Rounds alternate the order, A B then B A, because this machine's
speed drifts from one bench to the next. Each bench prints its own figures and the load average;
the end has the medians of the rounds, and this build's ratio to the other. The benches' copies
are all removed at the end, not one after its bench: on ext4 without a journal, every file made
in the minutes after thousands were removed costs more (the inode allocator skips the recently
removed ones), and the next bench would pay for the last one's cleanup.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import ROOT, TRIVIAL, bench_http, conditions, fill_data  # noqa: E402

from knitfab.planspec import parse_plan_spec  # noqa: E402
from knitfab.store import plans  # noqa: E402
from knitfab.store.db import Store  # noqa: E402

BETTER_LOW = {"start ms", "server CPU ms/run", "machine CPU ms/run"}


def filled(tmp: Path, data: int) -> Path:
    """One store with ``data`` done Data and the trivial plan, for every bench to copy."""
    store = Store(tmp / "filled")
    t0 = time.perf_counter()
    fill_data(store, data)
    plans.apply_plan(store, parse_plan_spec(TRIVIAL))
    print(f"store: {data} Data (filled in {time.perf_counter() - t0:.1f} s); {conditions(store)}")
    store.close()
    return tmp / "filled"


def one(build: str, root: Path, source: Path, tmp: Path, args) -> dict[str, float]:
    copy = tmp / f"{build}-{time.monotonic_ns()}"
    shutil.copytree(source, copy, symlinks=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n== {build} ({root}), load average {load}")
    return bench_http(copy, args.samples, args.burst, root)  # the copy is removed with the others, at the end


def summary(figures: dict[str, list[dict[str, float]]]) -> None:
    print(f"\nmedians of {len(figures['this'])} rounds (this build / the baseline):")
    for key in figures["this"][0]:
        ours = statistics.median(f[key] for f in figures["this"])
        theirs = statistics.median(f[key] for f in figures["baseline"])
        pairs = zip(figures["this"], figures["baseline"], strict=True)
        wins = sum((a[key] < b[key]) == (key in BETTER_LOW) for a, b in pairs)
        print(f"  {key:20s} this {ours:8.1f}   baseline {theirs:8.1f}   ratio {ours / theirs:5.2f}"
              f"   this build better in {wins} of {len(figures['this'])} rounds")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout (its knitfab.py serve)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--burst", type=int, default=300)
    args = parser.parse_args()
    builds = {"this": ROOT, "baseline": args.baseline.resolve()}
    figures: dict[str, list[dict[str, float]]] = {"this": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = filled(Path(tmp), args.data)
        for n in range(args.rounds):
            for build in ("this", "baseline") if n % 2 == 0 else ("baseline", "this"):
                figures[build].append(one(build, builds[build], source, Path(tmp), args))
    summary(figures)


if __name__ == "__main__":
    main()
