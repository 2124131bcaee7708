"""``GET /api/data/?tag=...`` under load: 10, 100 and 1,000 hits at 100,000 (or 1,000,000) Data.

    .venv/bin/python bench/api_bench.py [--data 100000] [--clients 1,4,16] [--seconds 5]
    .venv/bin/python bench/api_bench.py --no-http          # only the in-process figures
    .venv/bin/python bench/api_bench.py --mlflow /path/to/venv/bin/python   # MLflow as a peer

The store (N done Data, five tags each, as bench/engine_bench.py fills it) is built once and kept
in ``.cache/bench/api-store-N/`` (``--cache DIR``); each run copies its database into a temporary
data directory, so the cached one is never written. Then:

* in process, the median time of ``find_data`` + the JSON encoding (what one uncached request
  costs the server) for 10, 100 and 1,000 hits, next to its floor: the same rows read by one
  bare SQL statement. Each query names the common tag ``type:dataset`` (on every Data) FIRST,
  so a planner that guesses the rarest tag wrong shows it;
* over HTTP, two ``knitfab serve`` processes on two copies, one with ``--response-cache 0``
  (every answer computed: "computed") and one with the default cache ("cached"), loaded in turn
  (computed, cached, computed, cached...) by ``wrk`` (C, event-driven: not the bottleneck; a
  Debian package, scripts/install-system-deps.sh) at 1, 4 and 16 connections: requests/s,
  p50/p95 latency and the server's CPU time per request (from /proc: robust to other load);
* with ``--mlflow PYTHON`` (an interpreter with MLflow: ``pip install mlflow`` in a venv of its
  own), MLflow's ``search_runs`` of the same tags among as many runs in its SQLite store, in
  process too (``bench/mlflow_peer.py``; an optional column, left out without it);
* the floor: the same server answering ``GET /api/x/formats`` (a constant JSON through the same
  cheroot, Reception, Flask hooks and worker pool) with the same client: the HTTP front's own
  ceiling on this machine.

Target (issue 14): 100 hits >= 500 req/s at 16 clients, p95 < 100 ms, at 10^5 Data. The load
average is printed before and after: on a shared 2-core machine the figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from engine_bench import fill_data  # noqa: E402

from knitfab.api import render  # noqa: E402
from knitfab.api.web import compact_json  # noqa: E402
from knitfab.store import data  # noqa: E402
from knitfab.store.db import Store  # noqa: E402
from knitfab.tags import parse_tag  # noqa: E402

REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %f %f\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000))
  io.write(string.format("ERRORS %d %d\\n", summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status))
end
"""
# engine_bench's tags: project:pK on every 100th Data, batch:bK every 1,000th, shard:sK every 10,000th.
KEYS = {100: "project:p7", 1000: "batch:b107", 10000: "shard:s107"}
FLOOR = "/x/formats"
TICKS = os.sysconf("SC_CLK_TCK")


def queries(n: int) -> list[tuple[int, list[str]]]:
    """(hits, the tags) for 10, 100 and 1,000 hits among n Data, the common tag first."""
    return [(hits, ["type:dataset", KEYS[n // hits]]) for hits in (10, 100, 1000) if n // hits in KEYS]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the store, built once ------------------------------------------------------------------------


def cached_store(cache: Path, n: int) -> Path:
    """The database file of n Data, built on the first run and kept."""
    db = cache / f"api-store-{n}" / "knitfab.db"
    was = db.exists()
    if not was:
        tmp = cache / f"api-store-{n}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        store = Store(tmp)
        fill_data(store, n)
        store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        print(f"store: built {n} Data in {time.perf_counter() - t0:.0f} s")
        shutil.rmtree(db.parent, ignore_errors=True)
        tmp.rename(db.parent)
    size = db.stat().st_size / 2**20
    print(f"store: {n} Data, 5 tags each, {size:.0f} MiB SQLite, {'cached' if was else 'new'}: {db}")
    return db


def copy_of(db: Path, where: Path) -> Path:
    where.mkdir(parents=True)
    shutil.copyfile(db, where / "knitfab.db")
    return where


# -- in process -----------------------------------------------------------------------------------


def median_ms(fn, repeat: int = 15) -> float:
    fn()  # warm the page cache and SQLite's statement cache
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def alternated_ms(a, b, repeat: int = 15) -> tuple[float, float]:
    """Medians of a and b, run in turns (A B A B) after one warm-up each."""
    a(), b()
    samples: tuple[list, list] = ([], [])
    for _ in range(repeat):
        for fn, out in ((a, samples[0]), (b, samples[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(samples[0]) * 1000, statistics.median(samples[1]) * 1000


def in_process(data_dir: Path, n: int) -> dict[int, float]:
    """find_data + encoding with the store's mmap (the default) and, on a second connection,
    without (mmap_size=0: pages read into each connection's own cache), alternated; next to
    the bare SQL."""
    store, unmapped = Store(data_dir), Store(data_dir)
    unmapped.execute("PRAGMA mmap_size=0")
    print(f"in process (medians of 15, alternated, warm cache), {n} Data, load average {loadavg()}:")
    medians = {}
    for hits, texts in queries(n):
        tags = [parse_tag(t) for t in texts]
        assert len(data.find_data(store, tags)) == hits
        ours, without = alternated_ms(
            lambda: compact_json(render.data_list(data.find_data(store, tags))),  # noqa: B023
            lambda: compact_json(render.data_list(data.find_data(unmapped, tags))),  # noqa: B023
        )
        floor = median_ms(lambda: bare_rows(store, texts[1]))  # noqa: B023
        medians[hits] = ours
        print(
            f"  {'&'.join(texts):<30} {hits:5d} DataDetails {ours:8.1f} ms (without mmap {without:6.1f} ms)"
            f"   bare SQL of the same rows {floor:6.1f} ms   ours/floor {ours / floor:5.1f}x"
        )
    store.close()
    unmapped.close()
    return medians


def mlflow_peer(python: str, cache: Path, n: int, ours: dict[int, float]) -> None:
    """MLflow's search_runs of the same tags, in its own interpreter (bench/mlflow_peer.py)."""
    argv = [python, str(ROOT / "bench" / "mlflow_peer.py"), "--data", str(n), "--cache", str(cache)]
    for hits, texts in queries(n):
        argv += ["--query", str(hits), *texts]
    print(f"MLflow, in process: search_runs of the same tags among {n} runs (SQLite), load average {loadavg()}:")
    for line in subprocess.run(argv, check=True, capture_output=True, text=True).stdout.splitlines():
        row = json.loads(line)
        if "built" in row:
            print(f"  its store: built in {row['seconds']} s, kept in {cache}")
            continue
        ratio = row["ms"] / ours[row["hits"]]
        print(f"  {row['hits']:5d} runs {row['ms']:10.1f} ms (MLflow {row['mlflow']})   MLflow/ours {ratio:7.1f}x")


def bare_rows(store: Store, rare: str) -> list:
    key, value = rare.split(":")
    return store.all(
        "SELECT d.knit_id, d.timestamp, r.status FROM data_tag x JOIN tag t ON t.id = x.tag_id"
        " JOIN data d ON d.knit_id = x.knit_id JOIN run r ON r.run_id = d.run_id WHERE t.key = ? AND t.value = ?",
        key, value,
    )  # fmt: skip


# -- over HTTP ------------------------------------------------------------------------------------


class Server:
    def __init__(self, data_dir: Path, *flags: str):
        argv = [
            sys.executable,
            str(ROOT / "knitfab.py"),
            "serve",
            "--port",
            "0",
            "--registry-port",
            "0",
            "--data-dir",
            str(data_dir),
            *flags,
        ]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        said = []
        for line in self.proc.stderr:
            if "is serving on" in line:
                self.url = line.split("is serving on ")[1].split()[0]
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # its log never fills the pipe
                return
            said.append(line)
        raise RuntimeError("the server did not start:\n" + "".join(said))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.proc.stderr.close()


def load(server: Server, path: str, clients: int, seconds: int, script: Path) -> dict:
    """wrk against ``path``: req/s, p50, p95 (ms) and the server's CPU ms per request."""
    cpu = server.cpu_seconds()
    out = subprocess.run(
        ["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
         server.url + path],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    cpu = server.cpu_seconds() - cpu
    result = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    errors = next(line for line in out.splitlines() if line.startswith("ERRORS")).split()
    assert errors[1:] == ["0", "0"], out
    requests, micros = int(result[1]), int(result[2])
    return {"rps": requests / (micros / 1e6), "p50": float(result[3]), "p95": float(result[4]),
            "cpu": 1000 * cpu / max(requests, 1)}  # fmt: skip


def show(label: str, m: dict, verdict: str = "") -> None:
    print(
        f"  {label:<44} {m['rps']:7.0f} req/s   p50 {m['p50']:6.1f} ms   p95 {m['p95']:6.1f} ms"
        f"   server CPU {m['cpu']:5.2f} ms/req{verdict}"
    )


def check_answer(server: Server, path: str, hits: int) -> None:
    out = subprocess.run(["curl", "-sf", server.url + path], capture_output=True, check=True).stdout
    assert len(json.loads(out)) == hits


def over_http(db: Path, tmp: Path, n: int, args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: sh scripts/install-system-deps.sh (as root) installs it")
    script = tmp / "report.lua"
    script.write_text(REPORT)
    computed = Server(copy_of(db, tmp / "computed"), "--response-cache", "0")
    cached = Server(copy_of(db, tmp / "cached"))
    try:
        print(f"over HTTP: wrk -c<clients> -d{args.seconds}s, {n} Data, load average {loadavg()}")
        for clients in args.clients:
            print(f" {clients} client{'s' if clients > 1 else ''}:")
            show(f"floor GET /api{FLOOR}", load(cached, FLOOR, clients, args.seconds, script))
            for hits, texts in queries(n):
                path = "/data/?" + "&".join(f"tag={t}" for t in texts)
                for name, server in (("computed", computed), ("cached", cached)):
                    check_answer(server, path, hits)
                    m = load(server, path, clients, args.seconds, script)
                    verdict = ""
                    if hits == 100 and n == 10**5 and clients == 16:
                        ok = m["rps"] >= 500 and m["p95"] < 100
                        verdict = "   target >= 500 req/s, p95 < 100 ms: " + ("meets" if ok else "MISSES")
                    show(f"{hits:4d} hits, {name}", m, verdict)
        print(f"load average after: {loadavg()}")
    finally:
        computed.stop()
        cached.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=int, default=100_000, choices=[10_000, 100_000, 1_000_000])
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench", help="where the store is kept")
    parser.add_argument("--no-http", action="store_true", help="only the in-process figures")
    parser.add_argument(
        "--mlflow", default=os.environ.get("MLFLOW_PYTHON"), help="a python with MLflow: its search_runs as a peer"
    )
    args = parser.parse_args()
    db = cached_store(args.cache, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        ours = in_process(copy_of(db, Path(tmp) / "in-process"), args.data)
        if args.mlflow:
            mlflow_peer(args.mlflow, args.cache, args.data, ours)
        if not args.no_http:
            over_http(db, Path(tmp), args.data, args)


if __name__ == "__main__":
    main()
