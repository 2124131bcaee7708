"""What one kind of thread spent its samples in, from ``engine_bench.py --profile FILE``.

    .venv/bin/python bench/profile_split.py FILE [THREAD] [--top 40]

``FILE`` holds py-spy's raw collapsed stacks (one line per stack: ``thread (tid): name;frame;...
count``). For the threads whose name contains ``THREAD`` (``knitfab-engine`` by default;
``CP Server`` for the HTTP workers, ``knitfab-reaper``), it prints each function's inclusive
share of their samples (a function counted once per stack), largest first. py-spy samples
what is on the CPU: the kernel's share of a system call shows under the Python function that
made it, and ``engine_bench`` prints how much of each thread's CPU is system time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

LOCATION = re.compile(r" \(.*?:\d+\)")  # "name (file.py:12)": one entry per function, not per line


def split(lines, thread: str) -> tuple[int, Counter]:
    """(the samples of the matching threads, each function's samples)."""
    total, inclusive = 0, Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or thread not in frames[0]:
            continue
        total += int(count)
        for name in {LOCATION.sub("", f) for f in frames[1:]}:
            inclusive[name] += int(count)
    return total, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("thread", nargs="?", default="knitfab-engine")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    with open(args.file) as f:
        total, inclusive = split(f, args.thread)
    print(f"{total} samples of the threads named like {args.thread!r}")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
