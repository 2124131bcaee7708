"""``knit data push`` and ``knit data pull -x`` against the disk they run on, and the server's memory.

    .venv/bin/python bench/transfer_bench.py [--big-mib 1024] [--small-files 20000] [--repeat 3]
    BENCH_TMP=/some/disk .venv/bin/python bench/transfer_bench.py   # where the files live

For (a) one big file of random bytes (it does not compress) and (b) many 4 KiB files, it times,
alternated, ``--repeat`` times each (medians):

* the physical limits of this disk: ``cp -r`` of the same tree, and ``tar -c | tar -x``
  uncompressed (archive and extract, no network, no compression);
* the old baseline: ``tar -cz | tar -xz`` (what gzip alone allows);
* ``knit data push`` and ``knit data pull -x``, as a user runs them (a subprocess of this
  repository's ``knit``, its profile pointing at a real ``knitfab serve`` process on loopback).

It prints the conditions (sizes, disk, page cache warm: every tree was just written), MiB/s or
files/s, and ours/limit ratios against ``cp``. The server's peak RSS (VmHWM) is read after the
pushes. Targets (issue 14): push and pull of 1 GiB >= 250 MiB/s, 20,000 small files >= 2,000
files/s, server RSS < 150 MB. DVC as a peer is not run here (it needs a remote and a git
repository; its figures from the same machine are in issue 14).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNIT = [sys.executable, "-m", "knit"]


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


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, str(ROOT / "knitfab.py"), "serve", "--port", "0", "--registry-port", "0"]
    proc = subprocess.Popen([*argv, "--data-dir", str(data_dir)], stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        if "is serving on" in line:
            return proc, line.split("is serving on ")[1].split()[0]
        said.append(line)
    raise RuntimeError("the server did not start:\n" + "".join(said))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def shell(command: str) -> Callable[[Path, Path], None]:
    def run(src: Path, dst: Path) -> None:
        dst.mkdir()
        q = {"src": shlex.quote(str(src)), "dst": shlex.quote(str(dst))}
        subprocess.run(command.format(**q), shell=True, check=True)

    return run


LIMITS = {
    "cp -r": "cp -r {src}/. {dst}",
    "tar -c | tar -x": "tar -c -C {src} . | tar -x -C {dst}",
    "tar -cz | tar -xz": "tar -cz -C {src} . | tar -xz -C {dst}",
}


class Knit:
    """``knit`` as a user runs it, in a HOME of its own whose profile points at the server."""

    def __init__(self, home: Path, url: str):
        self.env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
        self.home = home
        (home / "handout").write_text(f"apiRoot: {url}\ncert: {{}}\n")
        self.run("init", str(home / "handout"))
        self.pushed: list[str] = []

    def run(self, *args: str) -> str:
        done = subprocess.run([*KNIT, *args], env=self.env, cwd=self.home, check=True, capture_output=True, text=True)
        return done.stdout

    def push(self, src: Path, dst: Path) -> None:
        self.pushed.append(json.loads(self.run("data", "push", str(src)))["knitId"])

    def pull(self, src: Path, dst: Path) -> None:
        dst.mkdir()
        self.run("data", "pull", "-x", self.pushed[-1], str(dst))


def timed(step: Callable[[Path, Path], None], src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    step(src, dst)
    return time.perf_counter() - t0


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).stat().st_size == (b / f).stat().st_size for f in files
    )


def measure(name: str, src: Path, work: Path, size_mib: float, files: int, repeat: int) -> None:
    proc, url = start_server(work / "server")
    home = work / "home"
    home.mkdir()
    times: dict[str, list[float]] = {label: [] for label in [*LIMITS, "knit data push", "knit data pull -x"]}
    try:
        knit = Knit(home, url)
        for n in range(repeat):
            for label, command in LIMITS.items():
                times[label].append(timed(shell(command), src, work / f"copy{n}"))
                shutil.rmtree(work / f"copy{n}")
            times["knit data push"].append(timed(knit.push, src, work))
            pulled = work / f"pulled{n}"
            times["knit data pull -x"].append(timed(knit.pull, src, pulled))
            assert same_tree(src, pulled / knit.pushed[-1])
            shutil.rmtree(pulled)
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
        proc.stderr.close()
    report(name, times, size_mib, files, rss)


def report(name: str, times: dict[str, list[float]], size_mib: float, files: int, rss: float) -> None:
    limit = statistics.median(times["cp -r"])
    print(f"\n{name}: {size_mib:.0f} MiB in {files} files, medians of {len(times['cp -r'])}")
    for label, samples in times.items():
        t = statistics.median(samples)
        print(
            f"  {label:<18} {t:7.2f} s  {size_mib / t:7.0f} MiB/s  {files / t:7.0f} files/s   ours/cp {limit / t:5.0%}"
        )
    print(f"  server peak RSS {rss:.0f} MB (target < 150 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small-files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        disk = subprocess.run(["df", "-h", "--output=source,fstype", tmp], capture_output=True, text=True).stdout
        print(f"disk of {tmp}: {' '.join(disk.split()[2:])}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        make_big(work / "big" / "src", args.big_mib)
        measure("one big file", work / "big" / "src", work / "big", args.big_mib, 1, args.repeat)
        shutil.rmtree(work / "big")
        make_small(work / "small" / "src", args.small_files)
        size = args.small_files * 4 / 1024
        measure(f"{args.small_files} files of 4 KiB", work / "small" / "src", work / "small", size, args.small_files,
                args.repeat)  # fmt: skip


if __name__ == "__main__":
    main()
