"""``knit data push`` and ``knit data pull -x`` against the disk they run on, and the server's memory.

    .venv/bin/python bench/transfer_bench.py [--big-mib 1024] [--small-files 20000] [--repeat 3]
    BENCH_TMP=/some/disk .venv/bin/python bench/transfer_bench.py   # where the files live
    DVC=/path/to/dvc .venv/bin/python bench/transfer_bench.py       # DVC as a peer (else dvc on PATH)
    .venv/bin/python bench/transfer_bench.py --baseline /path/to/old/checkout  # an older build, same rounds

For (a) one big file of random bytes (it does not compress) and (b) many 4 KiB files, it times,
alternated round by round (A B A B), ``--repeat`` times each (medians):

* the physical limits of this disk: ``cp -r`` of the same tree, and ``tar -c | tar -x``
  uncompressed (archive and extract, no network, no compression, no checksum);
* the old baseline: ``tar -cz | tar -xz`` (what gzip alone allows; ``--gzip-runs`` rounds only,
  it is slow);
* DVC, when it is installed (``pip install dvc``; an optional column, ``--dvc-runs`` rounds):
  ``dvc add`` + ``dvc push`` to a local remote, and ``dvc pull`` into an empty cache;
* ``knit data push`` and ``knit data pull -x``, as a user runs them (a subprocess of this
  repository's ``knit``, its profile pointing at a real ``knitfab serve`` process on loopback;
  plain tar, negotiated through ``/api/x/formats`` and ``Accept``, with the checksum trailer they
  negotiate: SHA-256 in ``Content-Digest``, ``knit/digests.py``), with the CPU seconds each
  spent, client and server, and the server's system time (creating many files on this shared
  disk, it moves several-fold between runs of the same code);
* with ``--baseline DIR``, the same ``knit`` steps of another checkout (its own server), in the
  same rounds. For many small files the server listed first was the slower one here, whichever
  code it ran (the two data directories lie in different parts of the disk): run it the other
  way round too (this file copied into the other checkout, ``--baseline`` this one).

Sources, copies and the server's data directory are all in one temporary directory (under
``BENCH_TMP``, else this repository), so on one disk; it prints that disk, the load average
before and after each case, the page cache (warm: every tree was just written; ``sync`` before
each step, trees removed only between rounds, so that no step pays for the last one's writes and
removals), MiB/s and
files/s, the ratios to ``tar | tar`` and ``cp``, and the server's peak RSS (VmHWM). Targets
(issue 14): push and pull of 1 GiB >= 250 MiB/s (or the speed of ``tar | tar``), 20,000 small
files >= 2,000 files/s, server RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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


def start_server(data_dir: Path, root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, str(root / "knitfab.py"), "serve", "--port", "0", "--registry-port", "0"]
    proc = subprocess.Popen([*argv, "--data-dir", str(data_dir)], stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        if "is serving on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # its log never fills the pipe
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
}
GZIP = {"tar -cz | tar -xz": "tar -cz -C {src} . | tar -xz -C {dst}"}


class Knit:
    """``knit`` as a user runs it, in a HOME of its own whose profile points at the server."""

    def __init__(self, home: Path, url: str, root: Path = ROOT, server_pid: int | None = None):
        self.env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(root)}
        self.home, self.server_pid = home, server_pid
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


class Dvc:
    """DVC with a local remote on the same disk: push is ``dvc add`` + ``dvc push`` of a fresh
    repository's copy of the tree (the copy is not timed), pull is ``dvc pull`` into an empty cache."""

    def __init__(self, dvc: str, work: Path):
        self.dvc, self.work, self.round = dvc, work, 0

    def _in(self, repo: Path, *args: str) -> None:
        subprocess.run(args, cwd=repo, check=True, capture_output=True)

    def repository(self, name: str) -> Path:
        repo = self.work / f"{name}{self.round}"
        repo.mkdir()
        self._in(repo, "git", "init", "-q")
        self._in(repo, self.dvc, "init", "-q")
        self._in(repo, self.dvc, "remote", "add", "-d", "here", str(self.work / f"remote{self.round}"))
        return repo

    def prepare(self, src: Path) -> tuple[Path, Path]:
        """A repository with a copy of ``src`` to push, and another one to pull into (a clone of
        its ``.dvc`` file, its cache empty: no removal right before the pull)."""
        self.round += 1
        repo, clone = self.repository("dvc"), self.repository("clone")
        subprocess.run(["cp", "-r", str(src), str(repo / "data")], check=True)
        return repo, clone

    def push(self, repo: Path, clone: Path) -> None:
        self._in(repo, self.dvc, "add", "-q", "data")
        self._in(repo, self.dvc, "push", "-q")
        shutil.copy(repo / "data.dvc", clone / "data.dvc")

    def pull(self, clone: Path) -> None:
        self._in(clone, self.dvc, "pull", "-q")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(step: Callable[..., None], *args) -> float:
    os.sync()  # the last step's writes and removals are on disk: each step starts from a clean cache
    t0 = time.perf_counter()
    step(*args)
    return time.perf_counter() - t0


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).stat().st_size == (b / f).stat().st_size for f in files
    )


class Case:
    """One tree, measured round by round against the disk's limits and the peers."""

    def __init__(self, src: Path, work: Path, dvc: str | None, gzip_runs: int, dvc_runs: int):
        self.src, self.work, self.gzip_runs, self.dvc_runs = src, work, gzip_runs, dvc_runs
        self.dvc = Dvc(dvc, work) if dvc else None
        self.times: dict[str, list[float]] = {}
        self.cpu: dict[str, list[tuple[float, float, float]]] = {}  # a knit step's CPU s: client, server user, sys
        self.trash: list[Path] = []

    def remove(self, tree: Path) -> None:
        """At the end of the round: on a disk mounted with ``discard`` (this one), many files made
        right after many were removed take twice as long (the next step paid for the last one)."""
        self.trash.append(tree)

    def add(self, label: str, seconds: float) -> None:
        self.times.setdefault(label, []).append(seconds)

    def shell_round(self, n: int, commands: dict[str, str]) -> None:
        for label, command in commands.items():
            copy = self.work / f"copy{n}-{len(self.trash)}"
            self.add(label, timed(shell(command), self.src, copy))
            self.remove(copy)

    def dvc_round(self) -> None:
        repo, clone = self.dvc.prepare(self.src)
        self.add("dvc add + push", timed(self.dvc.push, repo, clone))
        self.add("dvc pull", timed(self.dvc.pull, clone))
        assert same_tree(self.src, clone / "data")
        self.trash += [repo, clone, self.work / f"remote{self.dvc.round}"]

    def knit_step(self, label: str, knit: Knit, step: Callable[..., None], *args) -> None:
        os.sync()  # as timed() does
        client, server, t0 = children_cpu(), cpu_seconds(knit.server_pid), time.perf_counter()
        step(*args)
        self.add(label, time.perf_counter() - t0)
        user, system = (b - a for a, b in zip(server, cpu_seconds(knit.server_pid), strict=True))
        self.cpu.setdefault(label, []).append((children_cpu() - client, user, system))

    def knit_round(self, knit: Knit, n: int, suffix: str = "") -> None:
        self.knit_step("knit data push" + suffix, knit, knit.push, self.src, self.work)
        pulled = self.work / f"pulled{n}{suffix.strip()}"
        self.knit_step("knit data pull -x" + suffix, knit, knit.pull, self.src, pulled)
        assert same_tree(self.src, pulled / knit.pushed[-1])
        self.remove(pulled)

    def knit_for(self, name: str, root: Path, procs: list[subprocess.Popen]) -> Knit:
        proc, url = start_server(self.work / f"server-{name}", root)
        procs.append(proc)
        home = self.work / f"home-{name}"
        home.mkdir()
        return Knit(home, url, root, proc.pid)

    def run(self, repeat: int, baseline: Path | None = None) -> float:
        """Every round: the limits, the old baseline (first rounds), DVC, knit (and the baseline
        checkout's knit); this checkout's server's peak RSS."""
        procs: list[subprocess.Popen] = []
        try:
            knit = self.knit_for("this", ROOT, procs)
            old = self.knit_for("baseline", baseline, procs) if baseline else None
            for n in range(repeat):
                self.shell_round(n, LIMITS)
                if n < self.gzip_runs:
                    self.shell_round(n, GZIP)
                if self.dvc and n < self.dvc_runs:
                    self.dvc_round()
                for kind, one in ((" (baseline)", old), ("", knit)) if n % 2 else (("", knit), (" (baseline)", old)):
                    if one is not None:
                        self.knit_round(one, n, kind)
                if n + 1 < repeat:
                    self.empty_trash()  # between rounds, never between two steps
            return peak_rss_mb(procs[0].pid)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()

    def empty_trash(self) -> None:
        for tree in self.trash:
            shutil.rmtree(tree)
        self.trash.clear()
        os.sync()
        time.sleep(5)  # the discards settle


def report(name: str, case: Case, size_mib: float, files: int, rss: float, load: tuple[float, float]) -> None:
    disk = statistics.median(case.times["tar -c | tar -x"])
    cp = statistics.median(case.times["cp -r"])
    print(f"\n{name}: {size_mib:.0f} MiB in {files} files; load average {load[0]:.1f} before, {load[1]:.1f} after")
    head = f"{'median':>8} {'MiB/s':>7} {'files/s':>8}  {'/ tar|tar':>9} {'/ cp':>6}  runs"
    print(f"  {'':<29} {head}  CPU s, client + server (its system time)")
    for label, samples in case.times.items():
        t = statistics.median(samples)
        ratios = f"{disk / t:9.0%} {cp / t:6.0%}"
        spent = _cpu_text(case.cpu.get(label))
        print(f"  {label:<29} {t:7.2f}s {size_mib / t:7.0f} {files / t:8.0f}  {ratios}  {len(samples):4}{spent}")
    print(f"  server peak RSS {rss:.0f} MB (target < 150 MB)")


def _cpu_text(cpu: list[tuple[float, float, float]] | None) -> str:
    """Medians: the client's CPU, the server's (and of it, the kernel's: file creation on a busy
    disk, which moves between runs of the same code)."""
    if not cpu:
        return ""
    client, user, system = (statistics.median(c[k] for c in cpu) for k in range(3))
    return f"  {client:.2f} + {user + system:.2f} (system {system:.2f})"


def measure(name: str, src: Path, work: Path, size_mib: float, files: int, args: argparse.Namespace) -> None:
    before = os.getloadavg()[0]
    case = Case(src, work, args.dvc, args.gzip_runs, args.dvc_runs)
    rss = case.run(args.repeat, args.baseline)
    case.empty_trash()
    report(name, case, size_mib, files, rss, (before, os.getloadavg()[0]))


def conditions(tmp: str, dvc: str | None) -> None:
    disk = subprocess.run(["df", "--output=source,fstype", tmp], capture_output=True, text=True).stdout.split()[2:]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(f"sources, copies and the server's data directory: {tmp}, on {' '.join(disk)} (one disk)")
    print("page cache warm (every tree was just written); sync before each step; removals between rounds")
    print(f"DVC: {dvc or 'not installed (pip install dvc, or DVC=path): its column is left out'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=1024, help="0: no big file")
    parser.add_argument("--small-files", type=int, default=20_000, help="0: no small files")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gzip-runs", type=int, default=1, help="rounds that also time tar -cz | tar -xz")
    parser.add_argument("--dvc-runs", type=int, default=1, help="rounds that also time DVC (when installed)")
    parser.add_argument("--baseline", type=Path, help="another checkout whose knit and server run the same rounds")
    args = parser.parse_args()
    args.dvc = os.environ.get("DVC") or shutil.which("dvc")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP") or ROOT, prefix="transfer-bench-") as tmp:
        work = Path(tmp)
        conditions(tmp, args.dvc)
        if args.big_mib:
            make_big(work / "big" / "src", args.big_mib)
            measure("one big file", work / "big" / "src", work / "big", args.big_mib, 1, args)
            shutil.rmtree(work / "big")
        if args.small_files:
            make_small(work / "small" / "src", args.small_files)
            size, name = args.small_files * 4 / 1024, f"{args.small_files} files of 4 KiB"
            measure(name, work / "small" / "src", work / "small", size, args.small_files, args)


if __name__ == "__main__":
    main()
