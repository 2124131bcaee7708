"""``GET /api/data/?tag=...``: 10, 100 and 1,000 hits at 100,000 (or 1,000,000) Data.

    .venv/bin/python bench/api_bench.py [--data 100000] [--connections 16] [--seconds 10]
    .venv/bin/python bench/api_bench.py --data 1000000 --seconds 5

Fills a data directory with N done Data (five tags each, as bench/engine_bench.py does), then:

* in process, the median time of ``find_data`` + the JSON encoding (what one request costs the
  server) for 10, 100 and 1,000 hits, next to its floor: the same rows read by one bare SQL
  statement, with no DataDetail built. Each query names the common tag ``type:dataset``
  (on every Data) FIRST, so a planner that guesses the rarest tag wrong shows it;
* over HTTP, a real ``knitfab serve`` process loaded from a second process with ``wrk`` (Debian
  package), 16 connections by default: requests/s and p50/p95/p99.

Targets (issue 14): 1,000 DataDetails in < 50 ms at 10^6 Data; 100 hits >= 500 req/s at 16
clients with p95 < 100 ms at 10^5 Data. MLflow as a peer is not run: it needs its own tracking
server and minutes of setup (its figure at the same sizes is in issue 14).
"""

from __future__ import annotations

import argparse
import json
import shutil
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

from knitfab.api import render  # noqa: E402
from knitfab.store import data  # noqa: E402
from knitfab.store.db import Store  # noqa: E402
from knitfab.tags import parse_tag  # noqa: E402

REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %f %f %f\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("ERRORS %d %d %d\\n", summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status, 0))
end
"""
# engine_bench's tags: project:pK on every 100th Data, batch:bK every 1,000th, shard:sK every 10,000th.
KEYS = {100: "project:p7", 1000: "batch:b107", 10000: "shard:s107"}


def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


def queries(n: int) -> list[tuple[int, str]]:
    """(hits, the tags) for 10, 100 and 1,000 hits among n Data, the common tag first."""
    return [(hits, ["type:dataset", KEYS[n // hits]]) for hits in (10, 100, 1000) if n // hits in KEYS]


def load(wrk: str, url: str, connections: int, seconds: int, script: Path) -> tuple[float, float, float, float]:
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    errors = next(line for line in out.splitlines() if line.startswith("ERRORS")).split()
    requests, micros, p50, p95, p99 = int(result[1]), int(result[2]), *map(float, result[3:])
    assert errors[1:] == ["0", "0", "0"], out
    return requests / (micros / 1e6), p50, p95, p99


def median_ms(fn, repeat: int = 15) -> float:
    fn()  # warm the page cache and SQLite's statement cache
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def in_process(store: Store, n: int) -> None:
    print(f"in process (median of 15, warm cache), {n} Data:")
    for hits, texts in queries(n):
        tags = [parse_tag(t) for t in texts]
        found = data.find_data(store, tags)
        assert len(found) == hits, len(found)
        ours = median_ms(
            lambda: json.dumps(render.data_list(data.find_data(store, tags)), ensure_ascii=False, separators=(",", ":"))  # noqa: B023
        )
        floor = median_ms(lambda: bare_rows(store, texts[1]))  # noqa: B023
        target = "   target < 50 ms: " + ("meets" if ours < 50 else "MISSES") if hits == 1000 and n >= 10**6 else ""
        print(
            f"  {'&'.join(texts):<30} {hits:5d} DataDetails {ours:8.1f} ms   bare SQL of the same rows"
            f" {floor:6.1f} ms   ours/floor {ours / floor:5.1f}x{target}"
        )


def bare_rows(store: Store, rare: str) -> list:
    key, value = rare.split(":")
    return store.all(
        "SELECT d.knit_id, d.timestamp, r.status FROM data_tag x JOIN tag t ON t.id = x.tag_id"
        " JOIN data d ON d.knit_id = x.knit_id JOIN run r ON r.run_id = d.run_id WHERE t.key = ? AND t.value = ?",
        key, value,
    )  # fmt: skip


def over_http(data_dir: Path, n: int, args: argparse.Namespace, script: Path) -> None:
    wrk = ensure_wrk()
    proc, url = start_server(data_dir)
    try:
        print(f"over HTTP: wrk -t2 -c{args.connections} -d{args.seconds}s against knitfab serve, {n} Data:")
        for hits, texts in queries(n):
            query = "&".join(f"tag={t}" for t in texts)
            got = len(json.loads(subprocess.run(["curl", "-s", f"{url}/data/?{query}"], capture_output=True,
                                                check=True).stdout))  # fmt: skip
            assert got == hits, got
            time.sleep(0.5)
            rps, p50, p95, p99 = load(wrk, f"{url}/data/?{query}", args.connections, args.seconds, script)
            verdict = ""
            if hits == 100 and n == 10**5:
                verdict = "   target >= 500 req/s, p95 < 100 ms: " + ("meets" if rps >= 500 and p95 < 100 else "MISSES")
            print(
                f"  GET /api/data/?{query:<34} ({hits:4d} hits) {rps:7.0f} req/s   p50 {p50:6.1f} ms"
                f"   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms{verdict}"
            )
    finally:
        proc.terminate()
        proc.wait()
        proc.stderr.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=int, default=100_000, choices=[10_000, 100_000, 1_000_000])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--no-http", action="store_true", help="only the in-process figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "knitfab"
        store = Store(data_dir)
        t0 = time.perf_counter()
        fill_data(store, args.data)
        print(f"store: {args.data} Data, 5 tags each, filled in {time.perf_counter() - t0:.0f} s; SQLite on {tmp}")
        in_process(store, args.data)
        store.close()
        if not args.no_http:
            script = Path(tmp) / "report.lua"
            script.write_text(REPORT)
            over_http(data_dir, args.data, args, script)


if __name__ == "__main__":
    main()
