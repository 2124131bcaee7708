"""Unpacking speed of uploads: ``knit.archive.unpack`` against GNU tar and Python's tarfile.

    .venv/bin/python bench/unpack_bench.py [--small-files 10000] [--big-mib 256] [--repeat 3]

For (a) many 4 KiB files, 100 to a directory and (b) one big file, each archive (tar and tar.gz)
is built in memory once, then extracted into a fresh directory on the same disk by:

* ``tar -x`` (GNU tar reading the archive on stdin): the peer, and about the disk's limit;
* tarfile's ``extractall(filter="data")`` in stream mode: what unpacking used before issue 9;
* ``unpack``: ours, with its checks (O_NOFOLLOW creation, end-of-archive, CRC, size limits).

It prints the median of ``--repeat`` runs and ours/tar (above 100%: faster than tar).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knit import archive  # noqa: E402


def small_files(count: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(count):
            info = tarfile.TarInfo(f"part{i // 100:03d}/sample{i:06d}.bin")  # grouped, as tar and knit write
            info.size, info.mode = 4096, 0o644
            tar.addfile(info, io.BytesIO(os.urandom(4096)))
    return buf.getvalue()


def big_file(mib: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("weights.bin")
        info.size = mib << 20
        tar.addfile(info, io.BytesIO(os.urandom(1 << 20) * mib))
    return buf.getvalue()


def gnu_tar(body: bytes, dest: Path, compressed: bool) -> None:
    subprocess.run(["tar", "-xz" if compressed else "-x", "-C", str(dest)], input=body, check=True)


def python_tarfile(body: bytes, dest: Path, compressed: bool) -> None:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r|gz" if compressed else "r|") as tar:
        tar.extractall(dest, filter="data")


def ours(body: bytes, dest: Path, compressed: bool) -> None:
    archive.unpack(io.BytesIO(body), dest, compressed, room=lambda total, coming: None)


def median_time(extract, body: bytes, compressed: bool, work: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        dest = Path(tempfile.mkdtemp(dir=work))
        os.sync()
        t0 = time.perf_counter()
        extract(body, dest, compressed)
        times.append(time.perf_counter() - t0)
        shutil.rmtree(dest)
    return statistics.median(times)


def measure(name: str, raw: bytes, work: Path, repeat: int) -> None:
    print(f"\n{name}: {len(raw) / (1 << 20):.0f} MiB of tar")
    for compressed, body in ((False, raw), (True, gzip.compress(raw, archive.GZIP_LEVEL))):
        peer = median_time(gnu_tar, body, compressed, work, repeat)
        before = median_time(python_tarfile, body, compressed, work, repeat)
        mine = median_time(ours, body, compressed, work, repeat)
        kind = "tar.gz" if compressed else "tar   "
        print(
            f"  {kind}  tar -x {peer:6.2f} s   tarfile data filter {before:6.2f} s   unpack {mine:6.2f} s"
            f"   ours/tar {peer / mine:4.0%}   ours/tarfile {before / mine:4.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, medians of {args.repeat}; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(dir=ROOT) as work:
        measure(f"{args.small_files} files of 4 KiB", small_files(args.small_files), Path(work), args.repeat)
        measure("one big file", big_file(args.big_mib), Path(work), args.repeat)


if __name__ == "__main__":
    main()
