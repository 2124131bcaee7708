"""The local runner: Job semantics on this host, each run in a bubblewrap sandbox.

A run executes the plan's ``entrypoint`` + ``args`` with every input Data bind-mounted
read-only at its path, every output (staging) directory read-write at its path, a private
``/tmp``, the host's system and Python read-only, and no network unless the operator allows it.
It is never root on the host (``runuser``: a dedicated uid when the server is root) and runs
under the plan's limits (``limits``: cgroups, entered through the ``gate`` once the sandbox is
set up, else rlimits); ``confine()`` wraps any sandbox
command line (host mode's ``sandbox()``, or an image's) in both. docs/security.md says exactly
what a run sees.
A plan ``image`` the operator maps to a directory (``--local-image NAME:TAG=DIR``) has that
directory at ``/work`` as the working directory, as ``WORKDIR /work`` + ``COPY`` would.

The worker is the chain of ``confine()`` in its own session, with stdout and stderr going
straight into the log Data's file ``log``; its outermost ``bwrap`` writes the run's exit code
into the worker's ``exit`` file (``--json-status-fd``: no shell waits for the run just to write
it; where bwrap lacks the option, ``sh -c '<chain>; echo $? > exit'`` does). It does not depend
on the server: after a ``kill -9`` of the server it keeps running, and the restarted server
finds it again by its process group and start time (the *handle*), and reads its exit code
from the ``exit`` file.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

from .. import quantity, trash
from ..store.layout import Layout
from .bwrap import SandboxCommands, sandbox_path
from .gate import Admit, Gate, child_pid, open_gate, open_orphan
from .gate import waiting as gate_waiting
from .limits import DEFAULT_PIDS, Cgroups, Limits, oom_killed, populated, remove_cgroups, rlimit_args
from .localimages import ImageModes
from .procs import group_alive, killpg, proc_stat, start_time
from .protocol import GONE, Job, Runner, WorkerState, WorkerStatus, empty_outputs
from .reaper import Reaper
from .runuser import bwrap_supports, give, launch, run_user
from .workdirs import Workdirs

log = logging.getLogger("knitfab.local")
logger = logging.getLogger(__name__)
# The exit code overwrites, in place, a placeholder written before the worker starts: on a full
# disk a new file (or a rename's directory entry) may find no block, the placeholder's block is there.
WRAPPER = '"$@"; code=$?; printf "%s\\n" "$code" 1<>exit'
# bwrap's status (a line of the namespaces' ids, then one of the exit code) fits in it too.
EXIT_PLACEHOLDER = " " * 1023 + "\n"  # no number: not ended yet
GIVEN_KEPT = 100_000  # knitIds remembered as given to the run uid (then the set starts over)


def machine_capacity() -> dict[str, Decimal]:
    """All of this machine's cores and memory; a run's ``ephemeral-storage`` is its tmpfs, in memory."""
    pages = Decimal(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return {"cpu": Decimal(os.cpu_count() or 1), "memory": pages, "ephemeral-storage": pages}


def parse_capacity(text: str) -> dict[str, Decimal]:
    """``cpu=2,memory=8Gi``: what the local runner may use at once."""
    capacity = machine_capacity()
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"capacity must be TYPE=QUANTITY[,...]: {item!r}")
        capacity[key.strip()] = quantity.value(value)
    return capacity


class LocalRunner(ImageModes, SandboxCommands, Runner):
    def __init__(
        self,
        layout: Layout,
        capacity: dict[str, Decimal] | None = None,
        network: bool = False,
        images: dict[str, Path] | None = None,
        grace: float = 10.0,
        on_exit: Callable[[], None] | None = None,
        run_uid: int | None = None,
        pids: int = DEFAULT_PIDS,
    ):
        self.layout = layout
        self.capacity = capacity if capacity is not None else machine_capacity()
        self.network = network
        self.images = {name: Path(d).resolve() for name, d in (images or {}).items()}
        self.grace = grace
        self.on_exit = on_exit
        self.user = run_user(run_uid)
        self.pids = pids
        self.cgroups = Cgroups.probe()
        self.trash = trash.for_layout(layout)  # also finishes what a killed server left half-removed
        self.workdir = Workdirs(layout.root)
        self._worker_trash = trash.at(self.workdir.trash)
        logger.info("local runner: runs execute as uid %d; limits by %s", self.user.uid, self.cgroups.enforced())
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopping: dict[str, float] = {}
        self._ended: set[str] = set()  # runs stop() has seen ended, until their cleanup
        self._running: set[str] = set()  # runs status() said were running, while a child of ours
        self._at_gate: set[str] = set()  # runs whose sandbox the server has yet to let go
        self._groups: dict[str, list[Path]] = {}  # runId -> its cgroups, for the runs this runner started
        self._given: set[str] = set()  # Data given to the run's uid: a published Data never changes
        self._lock = threading.Lock()
        self._reaper = Reaper(lambda: self.on_exit)  # one thread reaps every worker
        self.image_cache = None  # use_images() sets it: plans' images from the server's registry
        self.host_mode = True

    # -- protocol -------------------------------------------------------------------------------

    def prepare(self, job: Job) -> None:
        empty_outputs(self.layout, job)
        if self.user.privileged:
            for m in job.outputs:  # written by the run's uid; the log is written through our fd
                os.chown(self.layout.staging(m.knit_id), self.user.uid, self.user.gid)

    def start(self, job: Job) -> str:
        workdir = self.workdir(job.run_id)
        if (workdir / "handle").exists():
            return (workdir / "handle").read_text()  # started before a crash: it is that worker
        sandbox, note = self._command(job)
        workdir.mkdir(parents=True, exist_ok=True)
        status_fd = _placeholder(workdir / "exit")
        gate = Gate(workdir) if self.cgroups.parents else None  # the run's cgroups are entered by us
        try:
            command, fds = self._worker(job, sandbox, gate, status_fd)
            with open(self._log_path(job), "ab") as log:
                log.write(note.encode())
                proc = subprocess.Popen(
                    command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env={"PATH": sandbox_path()}, pass_fds=fds,
                )  # fmt: skip
        except BaseException:
            if gate:
                gate.abandon()
            raise
        finally:
            os.close(status_fd)
        # The handle first: a crash from here on leaves a worker the restarted server knows.
        handle = json.dumps({"pid": proc.pid, "start": start_time(proc.pid)})
        _write_new(workdir / "handle.tmp", handle)
        os.rename(workdir / "handle.tmp", workdir / "handle")
        with self._lock:
            self._procs[job.run_id] = proc
        info = None
        if gate:
            gate.started()
            with self._lock:
                self._at_gate.add(job.run_id)
            info = self._reaper.watch_info(gate.info, lambda pid: self._open_gate(job, pid, proc.pid), child_pid)
        self._wait(proc, info)
        return handle

    def _worker(self, job: Job, sandbox: list[str], gate: Gate | None, status_fd: int) -> tuple[list[str], tuple]:
        """The worker's command line and the fds it inherits."""
        gates = gate.fds() if gate else ()
        if bwrap_supports("--json-status-fd"):
            return self.confine(job, sandbox, gate, status_fd), (*gates, status_fd)
        return ["/bin/sh", "-c", WRAPPER, "knitfab-worker", *self.confine(job, sandbox, gate)], gates

    def status(self, job: Job) -> WorkerStatus:
        if self._unreaped_child(job):
            self._running.add(job.run_id)
            return WorkerStatus(WorkerState.RUNNING)  # known from memory: no file or /proc read per tick
        if job.worker and gate_waiting(self.workdir(job.run_id)) and self._leader_is_ours(job):
            # started by a server that died before it let the sandbox go: only while the worker's
            # shell is the one its handle names is the group the worker's (after a reboot it is not)
            open_orphan(self.workdir(job.run_id), self._cgroups_of(job), _pid(job), self._admit(job))
        code = self._exit_code(job)
        if code is None and self._alive(job):
            return WorkerStatus(WorkerState.RUNNING)
        code = self._exit_code(job) if code is None else code  # it may have just ended
        if code is None:
            code = self._reaped_code(job)  # its bwrap ended before the run began (a bad option, a bind)
        if code is None:
            return GONE
        if code == 0:
            return WorkerStatus(WorkerState.SUCCEEDED, 0, "")
        if oom_killed(self._cgroups_of(job)):
            memory = Limits.of(job.resources).memory_text
            return WorkerStatus(WorkerState.FAILED, code, f"(container main) OOMKilled: memory limit {memory} exceeded")
        return WorkerStatus(WorkerState.FAILED, code, _exit_message(code))

    def still_running(self, run_id: str) -> bool:
        """A child of ours not reaped yet: the reaper sets its ``returncode`` before it wakes the
        engine, so no end goes unseen."""
        with self._lock:
            proc = self._procs.get(run_id)
        return run_id in self._running and proc is not None and proc.returncode is None

    def logs(self, job: Job, follow: bool = False) -> Iterator[bytes]:
        with open(self._log_path(job), "rb") as f:
            while True:
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                elif follow and self._alive(job):
                    time.sleep(0.1)
                else:
                    rest = f.read()  # what the worker wrote just before it ended
                    if rest:
                        yield rest
                    return

    def stop(self, job: Job) -> bool:
        """Signal the worker's group (SIGTERM, SIGKILL once ``grace`` has passed) and return at
        once: True when it has ended. The engine asks again when the worker's exit wakes it."""
        if not self._alive(job):
            self._ended.add(job.run_id)
            return True
        deadline = self._stopping.setdefault(job.run_id, time.monotonic() + self.grace)
        # A sandbox still at its gate has executed nothing of the run, and as pid 1 of its own
        # namespace it ignores SIGTERM: it is killed at once.
        closed = gate_waiting(self.workdir(job.run_id))
        killpg(_pid(job), signal.SIGKILL if closed or time.monotonic() >= deadline else signal.SIGTERM)
        if self._alive(job):
            return False
        self._ended.add(job.run_id)
        return True

    def cleanup(self, job: Job) -> None:
        # Once stop() has seen nothing of the run left, nothing can come back: only a process
        # of the run could fork into its group, and none is left.
        if job.run_id not in self._ended and self._alive(job):
            killpg(_pid(job), signal.SIGKILL)  # stragglers the program left behind
            deadline = time.monotonic() + 5
            while self._alive(job) and time.monotonic() < deadline:
                time.sleep(0.01)
        remove_cgroups(self._cgroups_of(job))
        with self._lock:
            self._procs.pop(job.run_id, None)
            self._at_gate.discard(job.run_id)
        self._groups.pop(job.run_id, None)
        self._ended.discard(job.run_id)
        self._running.discard(job.run_id)
        self._stopping.pop(job.run_id, None)
        self._worker_trash.discard(self.workdir(job.run_id))  # removed off the engine thread

    # -- the sandbox ------------------------------------------------------------------------------

    def confine(self, job: Job, bwrap: list[str], gate: Gate | None = None, status_fd: int | None = None) -> list[str]:
        """What the worker executes around a sandbox's bwrap command line (host mode or image
        mode): the run's cgroups entered, its inputs readable by the run's unprivileged user,
        privileges dropped to that user, and rlimits for what no cgroup enforces. With a
        ``gate``, the sandbox is admitted to its cgroups once it exists (``gate``)."""
        limits = Limits.of(job.resources, self.pids)
        gated = gate is not None
        groups = self.cgroups.create(f"run-{job.run_id}", limits, gated)
        _write_new(self.workdir(job.run_id) / "cgroups", json.dumps([str(g) for g in groups]))
        self._groups[job.run_id] = groups  # the file is for a restarted server
        if self.user.privileged:
            self._give([m.knit_id for m in job.inputs])
        prlimit = rlimit_args(self.cgroups, limits, own_uid=not self.user.privileged)
        if gated and groups:
            bwrap = [bwrap[0], *gate.options(), *bwrap[1:]]
            if not (self.cgroups.entered_by_worker and self._alone(job.run_id)):
                groups = []  # the server moves the sandbox into them at its gate
        return launch(self.user, bwrap, self.cgroups.entry(groups), prlimit, status_fd)

    def _open_gate(self, job: Job, pid: int | None, pgid: int) -> None:
        """On the reaper's thread: the sandbox exists (``pid``), admit it to its cgroups and let it go."""
        if pid is not None:
            open_gate(self.workdir(job.run_id), self._cgroups_of(job), pid, pgid, self._admit(job))
        with self._lock:
            self._at_gate.discard(job.run_id)

    def _alone(self, run_id: str) -> bool:
        """Whether no other sandbox waits at its gate: then this run's worker enters its v1
        cgroups itself, for the start's latency (the server's move would wait for a grace
        period). Among starts that follow one another it does not: then the server's moves
        share grace periods, and the worker's own entry would cost an ``sh`` more and charge
        the sandbox's setup to the run's memory cgroup (2.5-9 ms more of the machine's CPU per
        run in a burst, ``bench/engine_baseline.py``)."""
        with self._lock:
            return not self._at_gate - {run_id}

    def _admit(self, job: Job) -> Admit:
        limits = Limits.of(job.resources, self.pids)
        return lambda groups, pid: self.cgroups.admit(groups, pid, limits)

    def _give(self, knit_ids: list[str]) -> None:
        """Give inputs to the run's uid once per Data (the walk is on the engine's thread: a
        Data of many files, read by many runs, costs it once)."""
        fresh = [k for k in knit_ids if k not in self._given]
        give(self.user, [self.layout.data(k) for k in fresh])
        if len(self._given) > GIVEN_KEPT:
            self._given.clear()
        self._given.update(fresh)

    # -- helpers ----------------------------------------------------------------------------------

    def _log_path(self, job: Job) -> Path:
        if job.log:
            return self.layout.staging(job.log) / "log"
        return Path(os.devnull)  # a plan without log: discarded

    def _cgroups_of(self, job: Job) -> list[Path]:
        known = self._groups.get(job.run_id)
        if known is not None:
            return known
        try:
            return [Path(g) for g in json.loads((self.workdir(job.run_id) / "cgroups").read_text())]
        except (FileNotFoundError, ValueError):
            return []

    def _exit_code(self, job: Job) -> int | None:
        try:
            return exit_code_in((self.workdir(job.run_id) / "exit").read_text())
        except FileNotFoundError:
            return None

    def _reaped_code(self, job: Job) -> int | None:
        """The exit status of a worker this runner started and reaped (128 + N for signal N)."""
        with self._lock:
            proc = self._procs.get(job.run_id)
        if proc is None or proc.returncode is None:
            return None
        return 128 - proc.returncode if proc.returncode < 0 else proc.returncode

    def _unreaped_child(self, job: Job) -> bool:
        """Whether the worker is a child this runner started that has not ended: its waiter
        (``_wait``) sets ``returncode`` the moment it is reaped."""
        with self._lock:
            proc = self._procs.get(job.run_id)
        return proc is not None and proc.returncode is None

    def _alive(self, job: Job) -> bool:
        if not job.worker:
            return False
        if self._unreaped_child(job):
            return True
        handle = json.loads(job.worker)
        leader = proc_stat(handle["pid"])
        if leader is not None and leader[2] != handle["start"]:
            return False  # the pid was reused by another process
        if leader is not None and leader[0] != "Z":
            return True
        # Once the leader has ended, what is left of the run can only be in its cgroups: the
        # server puts the sandbox in them before it lets it fork anything of the run (gate.py).
        # Until then the sandbox waits outside them, so only its process group can tell.
        inside = None if gate_waiting(self.workdir(job.run_id)) else populated(self._cgroups_of(job))
        return group_alive(handle["pid"]) if inside is None else inside

    def _leader_is_ours(self, job: Job) -> bool:
        handle = json.loads(job.worker)
        leader = proc_stat(handle["pid"])
        return leader is not None and leader[2] == handle["start"] and leader[0] != "Z"

    def _wait(self, proc: subprocess.Popen, info=None) -> None:
        """Have the worker reaped (its ``returncode`` set) and ``on_exit`` called when it ends."""
        self._reaper.watch(proc, info)


def exit_code_in(text: str) -> int | None:
    """The run's exit code in a worker's ``exit`` file: bwrap's JSON status lines or the shell
    wrapper's number; None while it has not ended (the placeholder, or a line being written)."""
    try:
        head = text.strip()
        if head[:1].isdigit():
            return int(head.split()[0])
        for line in head.splitlines():
            if '"exit-code"' in line:
                return int(json.loads(line)["exit-code"])
    except (ValueError, KeyError, TypeError):
        pass
    return None


def _write_new(path: Path, text: str) -> None:
    """A small file of the worker's directory in one open, write and close (no file object:
    its extra system calls are each a turn of the GIL given away, on the engine's thread)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _placeholder(path: Path) -> int:
    """Write the exit file's placeholder; an fd of it at its start, for bwrap's status."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, EXIT_PLACEHOLDER.encode())
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pid(job: Job) -> int:
    return json.loads(job.worker)["pid"]


def _exit_message(code: int) -> str:
    if code > 128:
        try:
            return f"(container main) killed by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return "(container main) Error"
