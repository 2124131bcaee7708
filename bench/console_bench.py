"""The console's Data view with 100,000 Data: time to the first page in a real Chromium.

    .venv/bin/python bench/console_bench.py [--data 100000] [--loads 5]

Fills a data directory with N done Data (five tags each, as bench/engine_bench.py does),
starts a real ``knitfab serve`` process on it and opens ``/#/data`` in headless Chromium
(Debian's chromium and chromium-driver) --loads times, each a fresh page load. A load is done
when the table shows its 100 rows; the time is ``performance.now()`` then (from navigation
start: HTML, scripts, the API call, drawing). For comparison, the same run times the API
answers: the page the console asks for (``limit=101&order=desc``) and the whole list that a
console without paging (Knitfab's) must fetch first, and the same console over a store of only
100 Data (the floor: what the page costs on this machine, whatever the store's size). The load
average is printed too: on a shared machine it is most of the time. Target (issue 13): under 1 s.
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

from knitfab.store.db import Store  # noqa: E402

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
        big, small = Path(work) / "big", Path(work) / "small"
        start = time.perf_counter()
        for folder, count in ((big, args.data), (small, 100)):
            store = Store(folder)
            fill_data(store, count)
            store.close()
        print(f"filled {args.data:,} Data in {time.perf_counter() - start:.1f} s")
        browser = Browser(Path(work) / "downloads")
        try:
            loads, page, whole = measure(browser, big, args.loads, whole=True)
            floor, _, _ = measure(browser, small, args.loads)
        finally:
            browser.close()
    median = statistics.median(loads)
    print(f"conditions: headless Chromium 1366x800, server and browser on this machine, load average {load()}")
    print(f"console, first page of 100 Data of {args.data:,}: median {median * 1000:.0f} ms over {args.loads} loads"
          f" (min {min(loads) * 1000:.0f}, max {max(loads) * 1000:.0f}); target < 1000 ms")  # fmt: skip
    print(f"console, first page of 100 Data of 100 (the floor): median {statistics.median(floor) * 1000:.0f} ms")
    print(f"API, the page it asks for (limit=101&order=desc): median {page[0] * 1000:.0f} ms, {page[1]:,} bytes")
    print(f"API, the whole list (no paging, as Knitfab's console asks): {whole[0] * 1000:.0f} ms, {whole[1]:,} bytes")
    print(f"ratio: {args.data:,} / 100 Data in the console {median / statistics.median(floor):.2f}x;"
          f" whole list / console's first page {whole[0] / median:.1f}x")  # fmt: skip


def measure(browser: Browser, data_dir: Path, loads: int, whole: bool = False):
    """First-page times of the console over ``data_dir``, and the API's page and whole list."""
    proc, api = start_server(data_dir)
    url = api.removesuffix("/api")
    try:
        first_page(browser, url)  # warm: the OS page cache and Chromium's own start
        times = [first_page(browser, url) for _ in range(loads)]
        page = api_time(url, {"limit": 101, "order": "desc"}, 5)
        return times, page, api_time(url, {}, 1) if whole else None
    finally:
        proc.terminate()
        proc.wait()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
