"""Images on the local runner: how fast a cached image's run starts, how fast a layer unpacks.

    .venv/bin/python bench/image_bench.py [--size-mb 100] [--runs 30]

1. Unpack: one ~100 MB gzipped layer (busybox and data files) through ``rootfs.Unpacker``
   against ``tar -xzf`` of the same file into the same disk (median of 3 each). Target: at
   least half as fast as tar.
2. Start: the image is in the cache; the time from ``LocalRunner.start(job)`` (inputs ready)
   to the image's entrypoint running (its first act, a shell builtin, marks a file in its
   output), median of ``--runs``. Target: under 50 ms. Peers: the same in host mode, and a bare
   ``bwrap`` doing the same from Python (what the sandbox itself costs on this machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from knitfab.images.blobs import BlobStore  # noqa: E402
from knitfab.images.cache import ImageCache  # noqa: E402
from knitfab.images.rootfs import Unpacker  # noqa: E402
from knitfab.runners.local import LocalRunner, exit_code_in  # noqa: E402
from knitfab.runners.protocol import Job, Mount  # noqa: E402
from knitfab.store.layout import Layout  # noqa: E402

STARTED = ["/bin/sh", "-c", ": > /out/y/started"]  # a shell builtin: no fork between start and the mark


def make_layer(work: Path, size_mb: int) -> Path:
    """A gzipped layer: busybox, its applets, and ``size_mb`` MB of half-compressible files."""
    tree = work / "tree"
    (tree / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", tree / "bin" / "busybox")
    for applet in ("sh", "true", "cat"):
        os.symlink("busybox", tree / "bin" / applet)
    for n in range(size_mb * 2):  # 512 KiB files, in 16 directories
        folder = tree / "data" / f"d{n % 16}"
        folder.mkdir(parents=True, exist_ok=True)
        block = os.urandom(256 << 10)
        (folder / f"f{n}.bin").write_bytes(block + bytes(256 << 10))
    layer = work / "layer.tar.gz"
    subprocess.run(["tar", "-czf", str(layer), "-C", str(tree), "."], check=True)
    shutil.rmtree(tree)
    return layer


def time_unpack(layer: Path, work: Path) -> tuple[float, float]:
    ours, tars = [], []
    for i in range(3):
        dest = work / f"ours{i}"
        dest.mkdir()
        t = time.perf_counter()
        unpacker = Unpacker(dest)
        with open(layer, "rb") as f:
            unpacker.apply(f)
        unpacker.close()
        ours.append(time.perf_counter() - t)
        dest = work / f"tar{i}"
        dest.mkdir()
        t = time.perf_counter()
        subprocess.run(["tar", "-xzf", str(layer), "-C", str(dest)], check=True)
        tars.append(time.perf_counter() - t)
        shutil.rmtree(work / f"ours{i}")
        shutil.rmtree(dest)
    return statistics.median(ours), statistics.median(tars)


def store_image(blobs: BlobStore, layer: Path) -> str:
    upload = blobs.start_upload()
    with open(layer, "rb") as f:
        blobs.append(upload, f, None)
    with open(layer, "rb") as f:
        layer_digest = blobs.finish_upload(upload, "sha256:" + hashlib.file_digest(f, "sha256").hexdigest())
    config = blobs.put_bytes(json.dumps({"os": "linux", "config": {"Entrypoint": STARTED}}).encode())
    manifest = {"schemaVersion": 2, "config": {"digest": config}, "layers": [{"digest": layer_digest}]}
    blobs.link_manifest("bench", blobs.put_bytes(json.dumps(manifest).encode()), "application/json", "v1")
    return "localhost:30503/bench:v1"


def time_starts(runner: LocalRunner, layout: Layout, image: str, entrypoint: list[str], runs: int) -> float:
    times = []
    for n in range(runs):
        job = Job(f"run-{image}-{n}", "plan", image, entrypoint, [], [Mount("/in/x", "in")], [Mount("/out/y", f"o{n}")])
        runner.prepare(job)
        t = time.perf_counter()
        job.worker = runner.start(job)
        times.append(wait_for(layout.staging(f"o{n}") / "started") - t)
        exit_file = layout.worker(job.run_id) / "exit"
        wait_for(exit_file)
        assert exit_code_in(exit_file.read_text()) == 0, (layout.worker(job.run_id) / "log").read_text()
        runner.cleanup(job)
    return statistics.median(times)


def wait_for(path: Path) -> float:
    """When ``path`` appeared (polled every 0.2 ms)."""
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.0002)
    return time.perf_counter()


def bare_bwrap(rootfs: Path, out: Path, runs: int) -> float:
    """What bubblewrap itself costs: the same root and output bound, nothing of ours around it."""
    (root,) = rootfs.iterdir()
    cmd = ["bwrap", "--unshare-all", "--cap-drop", "ALL", "--tmpfs", "/", "--ro-bind", str(root / "root" / "bin")]
    cmd += ["/bin", "--dev", "/dev", "--proc", "/proc", "--bind", str(out), "/out/y", "--unshare-user", "--uid", "0"]
    times = []
    for _ in range(runs):
        (out / "started").unlink(missing_ok=True)
        t = time.perf_counter()
        proc = subprocess.Popen([*cmd, "--", *STARTED])
        times.append(wait_for(out / "started") - t)
        proc.wait()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="knitfab-image-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        layer = make_layer(work, args.size_mb)
        mb = layer.stat().st_size / 1e6
        print(f"layer: {mb:.0f} MB gzipped, {args.size_mb} MB of files, {args.size_mb * 2 + 4} entries, on {work}")
        ours, tar = time_unpack(layer, work)
        speed = f"{tar / ours:.2f} of tar's speed (target >= 0.5)"
        print(f"unpack: ours {ours:.2f} s, tar -xzf {tar:.2f} s (median of 3): {speed}")
        layout = Layout(work / "data")
        layout.create()
        layout.data("in").mkdir(parents=True)
        blobs = BlobStore(layout.root / "registry")
        image = store_image(blobs, layer)
        runner = LocalRunner(layout)
        runner.use_images(ImageCache(blobs, layout.root / "rootfs", {"localhost:30503"}, 1 << 40))
        runner.image_cache.rootfs(runner.image_cache.find(image))  # cached, as after a first run
        start = time_starts(runner, layout, image, [], args.runs)
        host = time_starts(runner, layout, "not-pushed:v1", ["sh", "-c", STARTED[2]], args.runs)
        (work / "bare").mkdir()
        bare = bare_bwrap(layout.root / "rootfs", work / "bare", args.runs)
        print(f"start of a cached image's run: {start * 1000:.1f} ms median of {args.runs} (target < 50 ms);"
              f" host mode, the same sandbox over the host's system: {host * 1000:.1f} ms;"
              f" the floor, a bare `bwrap ... true` from Python: {bare * 1000:.1f} ms")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
