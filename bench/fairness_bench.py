"""Fairness benchmark: how long one big plan holds back a trivial run of another plan.

    .venv/bin/python bench/fairness_bench.py [--side 150] [--old-ref 30c39ea]

A plan crossing two inputs of SIDE Data each is applied once its Data exist (SIDE x SIDE new
combinations at once, the issue's 22,500), the engine thread starts, and a second later a Data
for a trivial plan arrives. Printed: from that Data's tag change to its run having a worker,
with the engine idle (the peer: what the trivial run costs alone), behind the big projection
with the code of this checkout, and with the engine of ``--old-ref`` (the commit before
projection worked in batches), both run in a subprocess on identical stores. Runs go to the
fake runner of the tests (workers that hang), so what is measured is the engine alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scenario(side: int, big: bool) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_runner import FakeRunner
    from helpers import apply, push

    from knitfab.engine import Engine
    from knitfab.store.db import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "knitfab")
        for i in range(side if big else 0):
            push(store, "side:a", f"n:{i}")
            push(store, "side:b", f"n:{i}")
        apply(store, {"/a": ["side:a"], "/b": ["side:b"]}, image="big:v1", args=["hang"])
        small = apply(store, {"/in": ["type:trigger"]}, image="small:v1", args=["succeed"])
        engine = Engine(store, FakeRunner(store.layout), poll=0.01)
        stop = threading.Event()
        thread = threading.Thread(target=engine.run_forever, args=(stop,), daemon=True)
        thread.start()
        time.sleep(1.0)  # the big projection is under way
        t0 = time.perf_counter()
        push(store, "type:trigger")
        engine.wake()
        delay = started(store, small["planId"], t0)
        made = store.one("SELECT COUNT(*) FROM run WHERE plan_id != ? AND combination IS NOT NULL", small["planId"])
        stop.set()
        engine.wake()
        thread.join(120)
        return {"delay": delay, "big_runs_created": made[0]}


GIVE_UP = 300.0  # seconds


def started(store, plan_id: str, t0: float) -> float:
    deadline = t0 + GIVE_UP
    while time.perf_counter() < deadline:
        if store.one("SELECT 1 FROM run WHERE plan_id = ? AND status NOT IN ('waiting', 'ready')", plan_id):
            return time.perf_counter() - t0
        time.sleep(0.002)
    return float("inf")


def in_subprocess(code_root: Path, side: int, big: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(side), "--big" if big else "--idle"]
    out = subprocess.run(
        cmd, cwd=code_root, capture_output=True, text=True, check=True, env={"PYTHONPATH": str(code_root)}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratio(old: dict, new: dict) -> str:
    if old["delay"] == float("inf"):
        return f"more than {GIVE_UP / new['delay']:.0f}x (the old engine had not started it after {GIVE_UP:.0f} s)"
    return f"{old['delay'] / new['delay']:.0f}x"


def old_tree(ref: str, into: Path) -> Path:
    """The ``knitfab`` and ``knit`` packages of ``ref``, with this checkout's test helpers."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "knitfab", "knit"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=150)
    parser.add_argument("--old-ref", default="30c39ea")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--big", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(scenario(args.child, args.big)))
        return
    print(f"a {args.side}x{args.side} plan ({args.side**2} combinations) projected while a trivial plan's Data arrives")
    alone = in_subprocess(ROOT, args.side, big=False)
    print(f"{'trivial run alone (engine idle)':<44} start after {alone['delay'] * 1000:9.1f} ms")
    new = in_subprocess(ROOT, args.side, big=True)
    print(f"{'behind the big plan, this checkout':<44} start after {new['delay'] * 1000:9.1f} ms"
          f"   ({new['big_runs_created']} big runs existed by then)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        old = in_subprocess(old_tree(args.old_ref, Path(tmp)), args.side, big=True)
    print(f"{'behind the big plan, ' + args.old_ref:<44} start after {old['delay'] * 1000:9.1f} ms"
          f"   ({old['big_runs_created']} big runs existed by then)")  # fmt: skip
    print(f"old / new delay: {ratio(old, new)}; new / alone: {new['delay'] / alone['delay']:.1f}x")


if __name__ == "__main__":
    main()
