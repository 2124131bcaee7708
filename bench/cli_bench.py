"""``knit`` start-up: how long ``knit version`` and ``knit data find`` take, as a user runs them.

    .venv/bin/python bench/cli_bench.py [--runs 20] [--data 1000] [--installed | --knit PATH/bin/knit]
                                        [--baseline OTHER/bin/knit]

Every command runs ``--runs`` times as a fresh process, alternated round by round with the floors
of the same interpreter: ``python -S -c pass`` (the interpreter alone) and ``python -c pass`` (plus
``site``: in an editable install, the finder setuptools adds, which ``knit`` pays too). ``knit``
is the installed console script (pip's wrapper next to the interpreter), and ``python -m knit``
shows what the wrapper itself adds. ``knit data find`` asks a real ``knitfab serve`` on loopback
holding ``--data`` Data (10 hits). Prints medians of wall and CPU time (the process and its
children: on a loaded machine the wall clock mostly measures the wait for a core) and the load
average before and after. ``--installed``: a wheel of this checkout installed in a new venv
of the same interpreter, as users have it (no editable finder in ``site``); ``--knit``: the
console script of another install; either is timed with its own interpreter. ``--baseline``:
another install's ``knit`` (an older commit) timed in the same rounds. Target (issue 14):
< 100 ms wall. What a command imports: ``python -X importtime -m knit version``;
tests/test_knit_cli.py keeps the list short.
"""

from __future__ import annotations

import argparse
import json
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
    """(wall ms, CPU ms of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000


def rounds(commands: dict[str, list[str]], runs: int, env: dict, cwd: Path) -> dict[str, list[tuple[float, float]]]:
    """Each command once per round, in turn (A B C A B C ...), after one warm-up round."""
    for argv in commands.values():
        timed(argv, env, cwd)  # the page cache, the server's first query
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            times[label].append(timed(argv, env, cwd))
    return times


def report(times: dict[str, list[tuple[float, float]]]) -> None:
    floor = statistics.median(w for w, _ in times["python -c pass"])
    print(f"  {'command':<34} {'wall ms':>8} {'CPU ms':>8} {'wall - python -c pass':>22}   target < 100 ms wall")
    for label, samples in times.items():
        wall, cpu = statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)
        verdict = ("meets" if wall < 100 else "MISSES") if label.startswith(("knit", "python -m", "base")) else ""
        print(f"  {label:<34} {wall:8.1f} {cpu:8.1f} {wall - floor:+22.1f}   {verdict}")


def installed(tmp: Path) -> Path:
    """``knit`` of a wheel of this checkout, installed alone in a new venv: what users run."""
    wheels, venv = tmp / "wheels", tmp / "venv"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True
    )
    wheel = [str(w) for w in wheels.glob("knitfab-*.whl")]
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", *wheel], check=True)
    return venv / "bin" / "knit"


def interpreter(script: Path) -> str:
    """The Python of a console script (its ``#!`` line)."""
    first = script.read_text().splitlines()[0]
    return first[2:].strip() if first.startswith("#!") else sys.executable


def editable(python: str) -> bool:
    """Whether that Python's knit is an editable install (its site-packages holds no knit/)."""
    probe = "import knit, sys; from pathlib import Path; print(Path(sys.prefix) in Path(knit.__file__).parents)"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd="/").stdout.strip() != "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--data", type=int, default=1000, help="Data in the server's store")
    parser.add_argument("--installed", action="store_true", help="time a wheel installed in a new venv")
    parser.add_argument("--knit", type=Path, help="the console script to time (default: this venv's)")
    parser.add_argument("--baseline", type=Path, help="another knit to time in the same rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = installed(Path(tmp)) if args.installed else args.knit or Path(sys.executable).parent / "knit"
        python = interpreter(script) if script.exists() else sys.executable
        knit = [str(script)] if script.exists() else [python, "-m", "knit"]
        home, data_dir = Path(tmp) / "home", Path(tmp) / "knitfab"
        home.mkdir()
        store = Store(data_dir)
        fill_data(store, args.data)
        store.close()
        proc, url = start_server(data_dir)
        try:
            env = {**os.environ, "HOME": str(home)}
            (home / ".knit").mkdir()  # what `knit init` writes (JSON), so that an installed knit needs no yaml
            (home / ".knit" / "profile").write_text(json.dumps({str(home): {"apiRoot": url, "cert": {}}}))
            found = subprocess.run([*knit, "data", "find", "-t", "project:p7"], env=env, cwd=home, capture_output=True)
            hits = found.stdout.count(b'"knitId"')
            commands = {
                "python -S -c pass": [python, "-S", "-c", "pass"],
                "python -c pass": [python, "-c", "pass"],
                "knit version": [*knit, "version"],
                "python -m knit version": [python, "-m", "knit", "version"],
                f"knit data find ({hits} hits)": [*knit, "data", "find", "-t", "project:p7"],
            }
            if args.baseline:
                commands["baseline: knit version"] = [str(args.baseline), "version"]
                commands["baseline: knit data find"] = [str(args.baseline), "data", "find", "-t", "project:p7"]
            load = os.getloadavg()[0]
            print(f"{args.runs} rounds, commands alternated; {os.cpu_count()} CPUs, load {load:.2f} at the start")
            kind = "an editable install" if editable(python) else "installed from a wheel"
            print(f"knit: {' '.join(knit)} ({kind}); python: {python}")
            print(f"server: knitfab serve on loopback, {args.data} Data in its store")
            if args.baseline:
                print(f"baseline: {args.baseline} (python: {interpreter(args.baseline)})")
            times = rounds(commands, args.runs, env, home)
            report(times)
            print(f"load {os.getloadavg()[0]:.2f} at the end")
        finally:
            proc.terminate()
            proc.wait()
            proc.stderr.close()


if __name__ == "__main__":
    main()
