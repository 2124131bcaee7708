"""The run's CPU quota and cgroups in force at the last moment: the launch itself is not the run.

Without a gate, the worker's chain enters the run's cgroups first and then starts the run's
``bwrap``; its setup (namespaces, mounts: knitfab's work, not the run's) then runs under the
run's CPU quota, and a trivial plan at ``cpu: 100m`` waits tens of milliseconds for the next
CFS period before its first instruction. With a gate, the run's ``bwrap`` is given
``--info-fd`` (it writes the pid of the sandbox's first process, its init, as soon as it exists)
and ``--block-fd``: that process waits, after the sandbox is set up and before it forks the
run's command, for a byte on a FIFO in the worker's directory. The server's reaper thread reads
the pid, *admits* it (``Cgroups.admit``), and only then writes the byte: on cgroup v2 it moves
the pid into every cgroup of the run; on v1 the worker has entered them itself, with no CPU
quota yet, and the server writes the quota (``Cgroups.entered_by_worker`` says why). Everything
the run executes descends from that process, so everything the run executes is limited, as before.

Fail-closed: the FIFO is open read-write in bwrap itself, so it never reads an end of file; if
the server dies before it opens the gate, the run waits and executes nothing, and the restarted
server opens it (``open_orphan``: the sandbox's init is the process of the worker's group that is
pid 1 of a pid namespace of its own). A process that cannot be admitted is killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from .procs import killpg, pgid_of

log = logging.getLogger("knitfab.local")
GO = "go"  # the FIFO in the worker's directory the sandbox waits on
INFO = "info"  # the FIFO bwrap writes the sandbox's pid into
OPENED = "opened"  # written once the gate is open: a restarted server leaves it alone
Admit = Callable[[list[Path], int], None]  # the sandbox's pid into the run's cgroups (raises OSError)


class Gate:
    """The fds of one worker's gate, from its creation to the worker's start."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        for name in (GO, INFO):
            (workdir / name).unlink(missing_ok=True)  # of a start cut short by a crash, before its worker began
            os.mkfifo(workdir / name, 0o600)
        self.go = os.open(workdir / GO, os.O_RDWR)  # bwrap's --block-fd: never an end of file
        # bwrap's --info-fd, read-write in the worker too: had the server died, a pipe without
        # reader would kill bwrap (SIGPIPE) when it writes; this one always has one.
        self.info = os.open(workdir / INFO, os.O_RDONLY | os.O_NONBLOCK)  # the reaper's
        self.info_w = os.open(workdir / INFO, os.O_RDWR)

    def options(self) -> list[str]:
        return ["--block-fd", str(self.go), "--info-fd", str(self.info_w)]

    def fds(self) -> tuple[int, int]:
        """The fds the worker inherits (``pass_fds``)."""
        return self.go, self.info_w

    def started(self) -> None:
        """The worker has them: the server keeps only the read end of the info pipe."""
        os.close(self.go)
        os.close(self.info_w)

    def abandon(self) -> None:
        """The worker could not start: close everything."""
        self.started()
        os.close(self.info)


def child_pid(info: bytes) -> int | None:
    """The pid bwrap's ``--info-fd`` gives, once its whole JSON document has arrived."""
    try:
        return int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def open_gate(workdir: Path, groups: list[Path], pid: int, pgid: int, admit: Admit) -> bool:
    """Admit ``pid`` (the sandbox's init, still waiting) to the run's cgroups (``admit``:
    ``Cgroups.admit``), then let it go on. Refuses a pid that is not of the worker's process
    group (reused meanwhile); a process that cannot be admitted is killed, never let go. True
    when it goes on."""
    if pgid_of(pid) != pgid:
        return False
    if not groups:  # they are gone (the run was cleaned up meanwhile): it must not run unconfined
        killpg(pgid, signal.SIGKILL)
        return False
    try:
        admit(groups, pid)
        fd = os.open(workdir / GO, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except OSError as e:  # never let a run wait forever for a gate that cannot open
        log.error("cannot put the sandbox %d in its cgroups and let it go (%s): the run is killed", pid, e)
        killpg(pgid, signal.SIGKILL)
        return False
    try:
        os.close(os.open(workdir / OPENED, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError:
        pass  # a restarted server would let it go again: the same pid into the same cgroups, harmless
    return True


def waiting(workdir: Path) -> bool:
    """Whether the worker has a gate no server has opened yet."""
    return (workdir / GO).exists() and not (workdir / OPENED).exists()


def open_orphan(workdir: Path, groups: list[Path], pgid: int, admit: Admit) -> bool:
    """Open the gate of a worker a previous server started (it died before opening it)."""
    pid = _sandbox_init(pgid)
    return pid is not None and open_gate(workdir, groups, pid, pgid, admit)


def _sandbox_init(pgid: int) -> int | None:
    """The process of group ``pgid`` that is pid 1 of its own pid namespace: the run's sandbox
    init (the staging bwrap unshares no pid namespace)."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit() and pgid_of(int(entry.name)) == pgid and _ns_pids(int(entry.name))[1:] == ["1"]:
                return int(entry.name)
    return None


def _ns_pids(pid: int) -> list[str]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return line.split()[1:]
    except OSError:
        pass
    return []
