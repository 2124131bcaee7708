"""The server's memory and its probes while it is attacked (issue 9 point 5).

    .venv/bin/python bench/attack_bench.py [--seconds 5] [--big-mib 300] [--parallel 4] [--slow 32]

Starts a real ``knitfab serve`` process and, one phase after another, while a prober asks
``GET /api/healthz`` every 50 ms:

* idle: nothing else (the peer every figure is read against);
* big heads: ``--parallel`` clients each send a ``--big-mib`` MiB header line, again and again;
* big trailers: as many chunked uploads whose ``x-checksum-md5`` trailer is ``--big-mib`` MiB;
* slow clients: ``--slow`` connections sending their request head one byte per 100 ms;
* all at once.

Prints, per phase, the server's peak RSS (sampled from /proc every 10 ms) and the probes'
latencies (median, max, failures). Targets: peak RSS < 150 MB, every probe < 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import transfer_bench  # bench/ is on the path when this script runs

MIB = 1 << 20


def start_server(data_dir: Path) -> tuple[subprocess.Popen, int]:
    proc, url = transfer_bench.start_server(data_dir)
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its log pipe flowing
    return proc, urlsplit(url).port


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def big_head(port: int, mib: int) -> None:
    send(port, b"GET /api/data/ HTTP/1.1\r\nHost: x\r\nX-Big: ", mib)


def big_trailer(port: int, mib: int) -> None:
    head = (
        b"POST /api/data/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"400\r\n" + b"\0" * 1024 + b"\r\n0\r\nx-checksum-md5: "
    )
    send(port, head, mib)


def send(port: int, start: bytes, mib: int) -> None:
    piece = b"a" * MIB
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(start)
        for _ in range(mib):
            sock.sendall(piece)


def slow_client(port: int, stop: threading.Event) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/data/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while not stop.wait(0.1):
            sock.send(b"a")


def repeat(attack, stop: threading.Event, *args) -> None:
    while not stop.is_set():
        attack(*args)


def probe(port: int) -> float | None:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /api/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = sock.recv(4096)
    except OSError:
        return None
    return time.perf_counter() - started if answer.startswith(b"HTTP/1.1 200") else None


def phase(pid: int, port: int, seconds: float, attackers: list) -> tuple[int, list[float | None]]:
    """Run ``attackers`` (targets taking a stop event) for ``seconds``; peak RSS, probe latencies."""
    stop = threading.Event()
    threads = [threading.Thread(target=a, args=(stop,), daemon=True) for a in attackers]
    for thread in threads:
        thread.start()
    peak, latencies, end = rss(pid), [], time.monotonic() + seconds
    next_probe = time.monotonic() + 0.2  # let the attack begin
    while time.monotonic() < end:
        peak = max(peak, rss(pid))
        if time.monotonic() >= next_probe:
            latencies.append(probe(port))
            next_probe = time.monotonic() + 0.05
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    return peak, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--big-mib", type=int, default=300, help="size of each oversized header line and trailer")
    parser.add_argument("--parallel", type=int, default=4, help="oversized heads (and trailers) sent at once")
    parser.add_argument("--slow", type=int, default=32, help="slow clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="knitfab-attack-") as tmp:
        proc, port = start_server(Path(tmp) / "kf")
        try:
            heads = [lambda s: repeat(big_head, s, port, args.big_mib)] * args.parallel
            trailers = [lambda s: repeat(big_trailer, s, port, args.big_mib)] * args.parallel
            slow = [lambda s: slow_client(port, s)] * args.slow
            phases = {"idle": [], "big heads": heads, "big trailers": trailers, "slow clients": slow}
            phases["all at once"] = heads + trailers + slow
            print(f"knitfab serve (pid {proc.pid}, 16 threads, --client-timeout 10, --max-header-size 65536)")
            print(f"{os.cpu_count()} CPUs; {args.seconds:g} s per phase; probes every 50 ms")
            print(f"attacks: {args.parallel} x {args.big_mib} MiB header lines and trailers, {args.slow} slow clients")
            print(f"{'phase':<14} {'peak RSS':>9} {'probes':>7} {'failed':>7} {'median':>9} {'max':>9}")
            worst_rss, worst_probe = 0, 0.0
            for name, attackers in phases.items():
                peak, latencies = phase(proc.pid, port, args.seconds, attackers)
                answered = [t for t in latencies if t is not None]
                failed = len(latencies) - len(answered)
                worst_rss, worst_probe = max(worst_rss, peak), max([worst_probe, *answered] + [99.0] * bool(failed))
                median = statistics.median(answered) * 1000 if answered else float("nan")
                top = max(answered) * 1000 if answered else float("nan")
                print(f"{name:<14} {peak / 1e6:>7.1f}MB {len(latencies):>7} {failed:>7} {median:>7.1f}ms {top:>7.1f}ms")
            print(f"target: peak RSS < 150 MB: {'ok' if worst_rss < 150e6 else 'MISSED'} ({worst_rss / 1e6:.1f} MB)")
            print(f"target: every probe < 1 s: {'ok' if worst_probe < 1 else 'MISSED'} (worst {worst_probe:.3f} s)")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
