"""A run's resource limits on this host: cgroups where the host has them, rlimits where not.

``Limits.of(resources)`` turns a plan's ``resources`` into numbers: ``memory`` (bytes), ``cpu``
(cores, as a CFS quota), a process count (``pids``, an operator setting: plans have no such
resource), and the size of the run's writable tmpfs (``ephemeral-storage``, else its memory).

``Cgroups.probe()`` finds, per controller (memory, pids, cpu), where this host lets the server
make child cgroups: a cgroup v2 subtree with the controller enabled (below the server's own
cgroup, else at the top of the hierarchy), else the v1 hierarchy of that controller below the
server's own cgroup, in a ``knitfab`` directory. ``create()`` makes a
run's cgroups and writes their limits; they are entered before anything of the run exists
(by the worker itself, or by the server at the run's gate: ``entered_by_worker``, ``gate``), so
everything the run forks is counted. What no cgroup covers falls back to
rlimits (``rlimit_args``): ``RLIMIT_DATA`` for memory (an allocation fails instead of an OOM
kill; unlike ``RLIMIT_AS`` it leaves address-space reservations and shared libraries alone) and
``RLIMIT_NPROC`` for processes (counted per host uid, so only for a dedicated run uid); cpu then
has no limit.
"""

from __future__ import annotations

import functools
import math
import os
import shlex
import signal
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .. import quantity

CONTROLLERS = ("memory", "pids", "cpu")
CFS_PERIOD = 100_000  # microseconds: the kernel's default period, as Kubernetes uses it
DEFAULT_PIDS = 1024


@dataclass(frozen=True)
class Limits:
    memory: int | None  # bytes
    cpu: Decimal | None  # cores
    pids: int
    tmp_size: int  # bytes of each writable tmpfs (/tmp, /dev/shm)
    memory_text: str = ""  # the plan's own spelling, for messages ("64Mi")

    @classmethod
    def of(cls, resources: dict[str, str], pids: int = DEFAULT_PIDS) -> Limits:
        memory = _bytes(resources.get("memory"))
        cpu = quantity.value(resources["cpu"]) if resources.get("cpu") else None
        tmp = _bytes(resources.get("ephemeral-storage")) or memory or 1 << 30
        return cls(memory, cpu or None, pids, tmp, resources.get("memory", ""))


def _bytes(text: str | None) -> int | None:
    return int(quantity.value(text)) if text else None


@dataclass(frozen=True)
class Cgroups:
    """Where each controller's run cgroups go (``{controller: parent dir}``); v2 shares one."""

    parents: dict[str, Path]

    @classmethod
    def probe(cls) -> Cgroups:
        mounts = _cgroup_mounts()
        own = _own_cgroups()
        parents: dict[str, Path] = {}
        v2 = _v2_parent(mounts.get(""), own.get("")) or _v2_parent(mounts.get(""), "/")
        for controller in CONTROLLERS:
            if v2 is not None and controller in _enabled(v2):
                parents[controller] = v2
            elif controller in mounts:
                parent = _v1_parent(mounts[controller], own.get(controller, "/"))
                if parent is not None:
                    parents[controller] = parent
        return cls(parents)

    def enforced(self) -> dict[str, str]:
        """What enforces each limit here, for the log and docs/security.md."""
        how = {c: ("cgroup v2" if _is_v2(p) else "cgroup v1") for c, p in self.parents.items()}
        how.setdefault("memory", "RLIMIT_DATA")
        how.setdefault("pids", "RLIMIT_NPROC (dedicated run uid only)")
        how.setdefault("cpu", "none")
        return how

    @functools.cached_property
    def entered_by_worker(self) -> bool:
        """Whether a gated worker can enter the run's cgroups itself, before its sandbox exists.

        Only with every controller on v1. There, a single-threaded process writing ``0`` into
        a group's ``tasks`` moves itself without the kernel's global lock on forks
        (``cgroup_threadgroup_rwsem``). Moving any other process takes that lock, and with it an
        RCU grace period unless another move came shortly before: 5 ms on an idle host here,
        13 ms under load. The CPU quota is then left out of ``create`` and written by ``admit``
        at the gate, so bwrap's setup is still not throttled. On v2 no such file exists: the
        server moves the sandbox at its gate. (``LocalRunner`` has a worker enter them itself
        only when no other sandbox waits at its gate: see ``LocalRunner._alone``.)"""
        return bool(self.parents) and not any(_v2_parent_of_runs(p) for p in self.parents.values())

    def create(self, name: str, limits: Limits, gated: bool = False) -> list[Path]:
        """Make the run's cgroups (one per hierarchy) with its limits; their directories.
        ``gated``: the run waits at a gate, and what ``admit`` writes there is left out."""
        made: dict[Path, Path] = {}
        for controller, parent in self.parents.items():
            group = made.setdefault(parent, parent / name)
            group.mkdir(exist_ok=True)
            if not (gated and controller == "cpu" and self.entered_by_worker):
                _WRITERS[(controller, _v2_parent_of_runs(parent))](group, limits)
        return list(made.values())

    def admit(self, groups: list[Path], pid: int, limits: Limits) -> None:
        """At the gate, before the sandbox ``pid`` forks anything of the run: ``pid`` moved into
        each of ``groups`` it is not in yet (none, when its worker entered them itself), then
        the CPU quota ``create`` left out. Raises ``OSError`` when it cannot."""
        for group in groups:
            if str(pid) not in (group / "cgroup.procs").read_text().split():
                write_value(group / "cgroup.procs", pid)
        if self.entered_by_worker:
            cpu = self.parents.get("cpu")
            for group in groups:
                if group.parent == cpu:
                    _cpu_v1(group, limits)

    def entry(self, groups: list[Path]) -> list[str]:
        """The ``sh`` commands by which a worker enters ``groups`` itself (``entered_by_worker``:
        ``0`` into v1's ``tasks``; otherwise its pid into ``cgroup.procs``)."""
        if self.entered_by_worker:
            return [f"echo 0 > {shlex.quote(str(g / 'tasks'))}" for g in groups]
        return [f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))}" for g in groups]


def rlimit_args(cgroups: Cgroups, limits: Limits, own_uid: bool = False) -> list[str]:
    """``prlimit`` for what no cgroup enforces (empty when cgroups cover it all). ``own_uid``:
    runs are the server's own uid, whose every process RLIMIT_NPROC would count."""
    args = []
    if "memory" not in cgroups.parents and limits.memory:
        args.append(f"--data={limits.memory}")
    if "pids" not in cgroups.parents and not own_uid:
        args.append(f"--nproc={limits.pids}")
    return ["prlimit", *args, "--"] if args else []


def oom_killed(groups: list[Path]) -> bool:
    """Whether the kernel's OOM killer ended a process of the run for its memory limit."""
    for group in groups:
        for name in ("memory.events", "memory.oom_control"):  # v2, v1
            try:
                fields = dict(line.split() for line in (group / name).read_text().splitlines())
            except (OSError, ValueError):
                continue
            if int(fields.get("oom_kill", 0)) > 0:
                return True
    return False


def populated(groups: list[Path]) -> bool | None:
    """Whether a process of the run is still in its cgroups; None when no cgroup can tell (there
    are none, or they are gone). Zombies do not count: the kernel takes a task out at its exit.
    The first group that can tell answers: the worker enters ``groups`` in this order before
    anything of the run is forked, and the run cannot leave one, so whatever is in any of them
    is in the first. One small read, where looking for the run's processes means reading all of /proc."""
    for group in groups:
        try:
            if _v2_parent_of_runs(group.parent):  # "populated" covers the sub-cgroups too
                return "populated 1" in (group / "cgroup.events").read_text().splitlines()
            return bool((group / "cgroup.procs").read_text().split())  # v1: the run cannot make sub-cgroups
        except OSError:
            continue
    return None


def remove_cgroups(groups: list[Path], timeout: float = 5.0) -> None:
    """Kill what is left in the run's cgroups and remove them (an emptied cgroup goes at once)."""
    deadline = time.monotonic() + timeout
    for group in groups:
        while not _removed(group):  # tried first: most runs leave nothing behind
            if time.monotonic() > deadline:
                break  # a process stuck in the kernel: left for the next cleanup
            _kill_all(group)
            if _removed(group):
                break
            time.sleep(0.02)


def _removed(group: Path) -> bool:
    """Remove an empty cgroup; False while a process is in it (the kernel refuses: EBUSY)."""
    try:
        group.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


# -- probing ----------------------------------------------------------------------------------------


def _cgroup_mounts() -> dict[str, Path]:
    """``{controller: v1 mount point}`` and ``{"": v2 mount point}`` from /proc/self/mountinfo."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = (right.split() + ["", "", ""])[:3]
        point = Path(left.split()[4])
        if fstype == "cgroup2":
            mounts.setdefault("", point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in CONTROLLERS:
                    mounts.setdefault(option, point)
    return mounts


def _own_cgroups() -> dict[str, str]:
    """``{controller: path}`` of this process, ``{"": path}`` for v2."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _v2_parent(mount: Path | None, own: str | None) -> Path | None:
    """``<own cgroup>/knitfab`` with the controllers enabled for its children, or None. Our own
    cgroup can give controllers to children only if it holds no process or is the root."""
    if mount is None or own is None:
        return None
    base = mount / own.lstrip("/")
    wanted = [c for c in CONTROLLERS if c in _available(base)]
    if not wanted:
        return None
    try:
        write_value(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        parent = base / "knitfab"
        parent.mkdir(exist_ok=True)
        available = [c for c in CONTROLLERS if c in _available(parent)]
        if available:
            write_value(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in available))
    except OSError:
        return None
    return parent if _enabled(parent) else None


def _v1_parent(mount: Path, own: str) -> Path | None:
    parent = mount / own.lstrip("/") / "knitfab"
    try:
        parent.mkdir(exist_ok=True)
    except OSError:
        return None
    return parent if os.access(parent / "cgroup.procs", os.W_OK) else None


def _available(group: Path) -> set[str]:
    try:
        return set((group / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _enabled(group: Path) -> set[str]:
    try:
        return set((group / "cgroup.subtree_control").read_text().split())
    except OSError:
        return set()


def _is_v2(group: Path) -> bool:
    return (group / "cgroup.controllers").exists()


@functools.cache
def _v2_parent_of_runs(parent: Path) -> bool:
    """``_is_v2`` of a parent of run cgroups, asked once (not for every run)."""
    return _is_v2(parent)


# -- writing limits ---------------------------------------------------------------------------------


def write_value(path: Path, value: object) -> None:
    """Write a kernel file (a cgroup's): one open, write and close. (A Python file object adds
    an fstat, an ioctl and two lseeks, each a turn of the GIL given away on the engine's and the
    reaper's threads, for every limit of every run.)"""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _write_if(path: Path, value: object) -> None:
    """For files a kernel may lack (swap accounting turned off): tried, not looked up first."""
    try:
        write_value(path, value)
    except FileNotFoundError:
        pass


def _memory_v1(group: Path, limits: Limits) -> None:
    if limits.memory:
        write_value(group / "memory.limit_in_bytes", limits.memory)
        _write_if(group / "memory.memsw.limit_in_bytes", limits.memory)  # no escape into swap


def _memory_v2(group: Path, limits: Limits) -> None:
    if limits.memory:
        write_value(group / "memory.max", limits.memory)
        _write_if(group / "memory.swap.max", 0)
        _write_if(group / "memory.oom.group", 1)  # the whole run ends, as a pod's container does


def _pids(group: Path, limits: Limits) -> None:
    write_value(group / "pids.max", limits.pids)


def _quota(limits: Limits) -> int | None:
    return max(1000, math.ceil(limits.cpu * CFS_PERIOD)) if limits.cpu else None


def _cpu_v1(group: Path, limits: Limits) -> None:
    quota = _quota(limits)
    if quota:  # the period: a new cgroup's is the kernel's default, CFS_PERIOD
        write_value(group / "cpu.cfs_quota_us", quota)


def _cpu_v2(group: Path, limits: Limits) -> None:
    quota = _quota(limits)
    if quota:
        write_value(group / "cpu.max", f"{quota} {CFS_PERIOD}")


_WRITERS = {
    ("memory", False): _memory_v1, ("memory", True): _memory_v2,
    ("pids", False): _pids, ("pids", True): _pids,
    ("cpu", False): _cpu_v1, ("cpu", True): _cpu_v2,
}  # fmt: skip


def _kill_all(group: Path) -> None:
    if (group / "cgroup.kill").exists():
        write_value(group / "cgroup.kill", 1)
        return
    try:
        pids = (group / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
