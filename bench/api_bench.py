"""``GET /api/data/?tag=...`` under load: requests/s and latency with 100,000 Data.

    .venv/bin/python bench/api_bench.py [--data 100000] [--connections 16] [--seconds 10]

Fills a data directory with N done Data (five tags each, as bench/engine_bench.py does),
starts a real ``knitfab serve`` process on it and loads it from a second process with ``wrk``
(Debian package; installed when missing and running as root), 16 connections by default.
Target (issue 3): at least 500 requests/s with p95 under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import shutil
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

REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %f %f %f\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("ERRORS %d %d %d\\n", summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status, 0))
end
"""


def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


def load(wrk: str, url: str, connections: int, seconds: int, script: Path) -> tuple[float, float, float, float]:
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    errors = next(line for line in out.splitlines() if line.startswith("ERRORS")).split()
    requests, micros, p50, p95, p99 = int(result[1]), int(result[2]), *map(float, result[3:])
    assert errors[1:] == ["0", "0", "0"], out
    return requests / (micros / 1e6), p50, p95, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "knitfab"
        store = Store(data_dir)
        fill_data(store, args.data)
        knit_id = store.one("SELECT knit_id FROM data LIMIT 1 OFFSET ?", args.data // 2)[0]
        store.close()
        script = Path(tmp) / "report.lua"
        script.write_text(REPORT)
        proc, url = start_server(data_dir)
        try:
            print(f"{args.data} Data; wrk -c{args.connections} -d{args.seconds}s against knitfab serve")
            for label, query in [
                ("two tags, 10 hits", "tag=project:p7&tag=shard:s107"),
                ("two tags, 100 hits", "tag=project:p7&tag=batch:b107"),
                ("knit#id, 1 hit", f"tag=knit%23id:{knit_id}"),
            ]:
                hits = len(json.loads(subprocess.run(["curl", "-s", f"{url}/data/?{query}"], capture_output=True,
                                                     check=True).stdout))  # fmt: skip
                time.sleep(0.5)
                rps, p50, p95, p99 = load(wrk, f"{url}/data/?{query}", args.connections, args.seconds, script)
                verdict = "meets" if rps >= 500 and p95 < 100 else "MISSES"
                print(
                    f"GET /api/data/?{label:<20} ({hits:3d}) {rps:7.0f} req/s   p50 {p50:6.1f} ms   p95 {p95:6.1f} ms"
                    f"   p99 {p99:6.1f} ms   target >= 500 req/s, p95 < 100 ms: {verdict}"
                )
        finally:
            proc.terminate()
            proc.wait()
            proc.stderr.close()


if __name__ == "__main__":
    main()
