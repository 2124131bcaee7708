"""The host's processes as /proc tells them, for the local runner and its gate: a process's
state, group and start time (a pid and its start time name one process, even after the pid is
reused), whether a process group still has a live member, and signalling a group."""

from __future__ import annotations

import os
import signal


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot), or None when it is gone.
    One open, read and close (a text file object adds four system calls: this is read for
    every run's start, gate and end, on the engine's and the reaper's threads)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096)  # one line, well under a page
        finally:
            os.close(fd)
        fields = text.rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[2] if stat else None


def pgid_of(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[1] if stat else None


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs. Zombies do not count: the sandbox's init
    is re-parented to PID 1 when it ends, and some PID 1s (container inits) reap late or never."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = proc_stat(int(entry.name))
                if stat is not None and stat[1] == pgid and stat[0] != "Z":
                    return True
    return False


def killpg(pgid: int, sig: signal.Signals) -> None:
    """Signal the group; one already gone is no error."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
