"""The console's Data view with 100,000 Data: time to the first page in a real Chromium.

    .venv/bin/python bench/console_bench.py [--data 100000] [--loads 5]

Fills a data directory with N done Data (five tags each, as bench/engine_bench.py does),
starts a real ``knitfab serve`` process on it and opens ``/#/data`` in headless Chromium
(Debian's chromium and chromium-driver) --loads times, each a fresh page load. A load is done
when the table shows its 100 rows; the time is ``performance.now()`` then (from navigation
start: HTML, scripts, the API call, drawing). For comparison, the same run times the API
answers: the page the console asks for (``limit=101&order=desc``) and the whole list that a
console without paging (Knitfab's) must fetch first. Target (issue 13): under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser  # noqa: E402
from engine_bench import fill_data  # noqa: E402
from transfer_bench import start_server  # noqa: E402

from knitfab.store import Store  # noqa: E402

ROWS = "return document.querySelectorAll('table.list tbody tr[data-id]').length"


def first_page(browser: Browser, url: str) -> float:
    """Seconds from navigation start until the Data table shows 100 rows."""
    browser.driver.get("about:blank")
    browser.driver.get(f"{url}/#/data")
    browser.wait(lambda d: d.execute_script(ROWS) == 100, timeout=60)
    return browser.driver.execute_script("return performance.now()") / 1000


def api_time(url: str, params: dict, times: int) -> tuple[float, int]:
    samples, size = [], 0
    for _ in range(times):
        start = time.perf_counter()
        size = len(requests.get(f"{url}/api/data/", params=params, timeout=600).content)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        store = Store(Path(work) / "server")
        start = time.perf_counter()
        fill_data(store, args.data)
        store.close()
        print(f"filled {args.data:,} Data in {time.perf_counter() - start:.1f} s")
        proc, api = start_server(Path(work) / "server")
        url = api.removesuffix("/api")
        browser = Browser(Path(work) / "downloads")
        try:
            first_page(browser, url)  # warm: the OS page cache and Chromium's own start
            loads = [first_page(browser, url) for _ in range(args.loads)]
            page, page_bytes = api_time(url, {"limit": 101, "order": "desc"}, 5)
            whole, whole_bytes = api_time(url, {}, 1)
        finally:
            browser.close()
            proc.terminate()
            proc.wait()
    print(f"conditions: {args.data:,} Data, headless Chromium 1366x800, server and browser on this machine")
    print(f"console, first page of 100 Data: median {statistics.median(loads) * 1000:.0f} ms over {args.loads} loads"
          f" (min {min(loads) * 1000:.0f}, max {max(loads) * 1000:.0f}); target < 1000 ms")  # fmt: skip
    print(f"API, the page it asks for (limit=101&order=desc): median {page * 1000:.0f} ms, {page_bytes:,} bytes")
    print(f"API, the whole list (no paging, as Knitfab's console asks): {whole * 1000:.0f} ms, {whole_bytes:,} bytes")
    print(f"ratio whole list / first page in the console: {whole / statistics.median(loads):.1f}x")


if __name__ == "__main__":
    main()
