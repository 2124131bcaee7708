"""Push and pull throughput against tar, and the server's memory during a big upload.

    .venv/bin/python bench/transfer_bench.py [--big-mib 1024] [--small-files 20000]

For (a) one big file of random bytes and (b) many 4 KiB files, it times, in one run:

* the baseline: ``tar -cz -C src . | tar -xz -C dst`` on local disk (archive, compress, extract);
* push: ``knit``'s archiver streaming a chunked tar.gz (with its MD5 trailer) to a real
  ``knitfab serve`` process, which extracts it into the Data;
* pull: downloading that Data as tar.gz and extracting it;
* the same with uncompressed tar (``application/x-tar``), for data that does not compress.

"ours/tar" is the baseline's time divided by ours: above 100% we are faster. The target
(issue 3) is at least 70%, and the server's peak RSS (VmHWM) below 150 MB during the upload.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knit import archive  # noqa: E402
from knit.transport import connect, send_chunked  # noqa: E402


def make_big(root: Path, mib: int) -> None:
    root.mkdir(parents=True)
    with open(root / "weights.bin", "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))


def make_small(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"part{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"sample{i:05d}.bin").write_bytes(os.urandom(4096))


def tar_baseline(src: Path, dst: Path) -> float:
    dst.mkdir()
    t0 = time.perf_counter()
    subprocess.run(f"tar -cz -C {shlex.quote(str(src))} . | tar -xz -C {shlex.quote(str(dst))}", shell=True, check=True)
    return time.perf_counter() - t0


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "knitfab.py"), "serve", "--port", "0", "--data-dir", str(data_dir)],
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:
        if "is serving on" in line:
            return proc, line.split("is serving on ")[1].split()[0]
    raise RuntimeError("the server did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def push(url: str, src: Path, compressed: bool) -> tuple[float, str]:
    conn = connect(url, timeout=600)
    ctype = "application/tar+gzip" if compressed else "application/x-tar"
    t0 = time.perf_counter()
    resp = send_chunked(conn, "POST", "/api/data/", archive.pack(src, compressed), {"Content-Type": ctype})
    body = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    assert resp.status == 200, body
    import json

    return elapsed, json.loads(body)["knitId"]


def pull(url: str, knit_id: str, dst: Path, compressed: bool) -> float:
    dst.mkdir()
    conn = connect(url, timeout=600)
    t0 = time.perf_counter()
    conn.request("GET", f"/api/data/{knit_id}" + ("" if compressed else "?format=tar"))
    resp = conn.getresponse()
    digest = archive.unpack(resp, dst, compressed)
    elapsed = time.perf_counter() - t0
    conn.close()
    assert resp.trailers["x-checksum-md5"] == digest
    return elapsed


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).stat().st_size == (b / f).stat().st_size for f in files
    )


def measure(name: str, src: Path, work: Path, size_mib: float) -> None:
    work = work / f"{src.name}-run"
    work.mkdir()
    base = tar_baseline(src, work / f"{name}-tar")
    shutil.rmtree(work / f"{name}-tar")
    proc, url = start_server(work / f"{name}-server")
    try:
        rss_before = peak_rss_mb(proc.pid)
        rows = []
        for compressed in (True, False):
            kind = "tar.gz" if compressed else "tar"
            t_push, knit_id = push(url, src, compressed)
            rss = peak_rss_mb(proc.pid)
            dst = work / f"{name}-{kind}-pulled"
            t_pull = pull(url, knit_id, dst, compressed)
            assert same_tree(src, dst)
            shutil.rmtree(dst)
            rows.append((kind, t_push, t_pull, rss))
    finally:
        proc.terminate()
        proc.wait()
        proc.stderr.close()
    print(f"\n{name}: {size_mib:.0f} MiB; baseline tar -cz | tar -xz: {base:.2f} s ({size_mib / base:.0f} MiB/s)")
    print(f"  server peak RSS at start: {rss_before:.0f} MB")
    for kind, t_push, t_pull, rss in rows:
        print(
            f"  {kind:<7} push {t_push:6.2f} s ({size_mib / t_push:5.0f} MiB/s, ours/tar {base / t_push:5.0%})"
            f"   pull {t_pull:6.2f} s ({size_mib / t_pull:5.0f} MiB/s, ours/tar {base / t_pull:5.0%})"
            f"   server peak RSS {rss:.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-files", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        make_big(work / "big", args.big_mib)
        measure("one big file", work / "big", work, args.big_mib)
        shutil.rmtree(work / "big")
        make_small(work / "small", args.small_files)
        measure(f"{args.small_files} files of 4 KiB", work / "small", work, args.small_files * 4 / 1024)


if __name__ == "__main__":
    main()
