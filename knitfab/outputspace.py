"""Disk space of the data volume and of what runs write (the engine's free-disk reserve).

(The engine-side twin of the upload's reserve check: a ``diskspace`` module may hold both.)
"""

from __future__ import annotations

import os
import shutil
import stat

from .runners.protocol import Job
from .store.layout import Layout

LOG_KEPT = 64 << 10  # bytes of its log a run stopped for filling the disk keeps


def written_bytes(layout: Layout, job: Job) -> int:
    """Disk space taken by what a run has written so far (its outputs and log, in staging)."""
    total = 0
    for knit_id in job.writable:
        for folder, _, files in os.walk(layout.staging(knit_id)):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    pass  # removed while we looked
    return total


def discard_outputs(layout: Layout, job: Job) -> None:
    """Free what a run that filled the disk wrote: its outputs emptied, its log cut short.
    Files are truncated before they are removed: a worker still holding one open would keep
    its blocks otherwise."""
    for m in job.outputs:
        staging = layout.staging(m.knit_id)
        for folder, _, files in os.walk(staging):
            for name in files:
                _truncate(os.path.join(folder, name), 0)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, exist_ok=True)
    if job.log and _truncate(layout.staging(job.log) / "log", LOG_KEPT):
        with open(layout.staging(job.log) / "log", "ab") as f:
            f.write(b"\n[knitfab: the log was cut here, the run filled the data volume]\n")


def _truncate(path: os.PathLike | str, size: int) -> bool:
    """Cut a regular file (never through a symlink) to ``size``; True when it was longer."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size <= size:
            return False
        os.ftruncate(fd, size)
        return True
    finally:
        os.close(fd)
