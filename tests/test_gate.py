"""The run's cgroups are entered by the server once its sandbox exists and before anything of
the run executes: the launch is not throttled by the run's CPU quota, the run is limited as
before, and a sandbox nobody let go executes nothing (a restarted server lets it go)."""

import json
import os
from pathlib import Path

import pytest
from helpers import apply, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.runners import gate
from knitfab.runners.local import LocalRunner
from knitfab.runners.procs import pgid_of, proc_stat
from knitfab.store.jobs import load_job


def start(store, runner, script):
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:x"]}, entrypoint=["sh", "-c", script], args=[],
                 resources={"cpu": "100m", "memory": "64Mi"})  # fmt: skip
    push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    job = load_job(store, run_id)
    if not runner._cgroups_of(job):
        pytest.skip("no cgroup can be made for runs on this host: there is no gate")
    return job


def worker_processes(job):
    """{pid: whether it is inside the sandbox (in a pid namespace of its own)} of the worker's group."""
    pgid = json.loads(job.worker)["pid"]
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pgid_of(int(entry.name)) == pgid:
            found[int(entry.name)] = len(gate._ns_pids(int(entry.name))) > 1
    return found


def members(groups):
    return [{int(p) for p in (g / "cgroup.procs").read_text().split()} for g in groups]


def test_everything_the_run_executes_is_in_its_cgroups_and_the_launch_is_not(store):
    runner = LocalRunner(store.layout)
    job = start(store, runner, "sleep 5 & sleep 5; echo done > /out/f")
    groups = runner._cgroups_of(job)
    wait_for(lambda: sum(worker_processes(job).values()) >= 4)  # init, sh and its two sleeps
    processes = worker_processes(job)
    for inside in members(groups):
        assert {pid for pid, sandboxed in processes.items() if sandboxed} <= inside
        assert not {pid for pid, sandboxed in processes.items() if not sandboxed} & inside  # sh, bwrap's monitor
    runner.stop(job), runner.cleanup(job)


def test_a_sandbox_nobody_lets_go_executes_nothing_until_a_restarted_server_does(store, monkeypatch):
    runner = LocalRunner(store.layout)
    monkeypatch.setattr(runner, "_open_gate", lambda *args: None)  # the server died before it opened the gate
    job = start(store, runner, "echo ran > /out/f")
    groups = runner._cgroups_of(job)
    pgid = json.loads(job.worker)["pid"]
    init = wait_for(lambda: gate._sandbox_init(pgid))
    output = store.layout.staging(job.outputs[0].knit_id) / "f"
    assert not output.exists() and not any(init in inside for inside in members(groups))
    assert runner.status(job).state == "running"  # it waits (a child of this server: not orphaned)

    restarted = LocalRunner(store.layout)  # knows of the worker only what its directory says
    wait_for(lambda: restarted.status(job).state == "succeeded")
    assert output.read_text() == "ran\n"
    restarted.cleanup(job)


def test_the_run_holds_neither_end_of_its_gate_nor_its_exit_file(store):
    # bwrap closes its --block-fd, --info-fd and --json-status-fd before the run's command: the
    # run can neither write its own "go", a pid for the server to put in its cgroups, nor an exit code.
    runner = LocalRunner(store.layout)
    job = start(store, runner, "sleep 5")
    wait_for(lambda: sum(worker_processes(job).values()) >= 2)  # init and sleep
    workdir = store.layout.worker(job.run_id)
    watched = {str(workdir / gate.GO), str(workdir / gate.INFO), str(workdir / "exit")}
    held = {}
    for pid, sandboxed in worker_processes(job).items():
        fds = Path(f"/proc/{pid}/fd")
        held[pid, sandboxed] = {os.readlink(fds / fd) for fd in os.listdir(fds)} & watched
    assert str(workdir / "exit") in held[json.loads(job.worker)["pid"], False]  # the worker's bwrap holds it...
    assert not any(files for (_, sandboxed), files in held.items() if sandboxed)  # ...the run nothing
    runner.stop(job), runner.cleanup(job)


def test_a_run_stopped_at_its_gate_leaves_no_process(store, monkeypatch):
    # The sandbox's init ignores SIGTERM (pid 1 of its namespace, no handler yet), and its
    # cgroups are still empty: only its process group tells that it is there.
    runner = LocalRunner(store.layout)
    monkeypatch.setattr(runner, "_open_gate", lambda *args: None)  # never let go
    job = start(store, runner, "echo ran > /out/f")
    pgid = json.loads(job.worker)["pid"]
    init = wait_for(lambda: gate._sandbox_init(pgid))
    wait_for(lambda: runner.stop(job), timeout=10)
    runner.cleanup(job)
    assert proc_stat(init) is None or proc_stat(init)[0] == "Z"


def test_a_restarted_server_leaves_a_gate_alone_when_the_worker_is_not_the_one_it_started(store, monkeypatch):
    # After a reboot the handle's pid may be another group's: its start time tells.
    runner = LocalRunner(store.layout)
    monkeypatch.setattr(runner, "_open_gate", lambda *args: None)
    job = start(store, runner, "echo ran > /out/f")
    groups = runner._cgroups_of(job)
    init = wait_for(lambda: gate._sandbox_init(json.loads(job.worker)["pid"]))
    handle = json.loads(job.worker)
    job.worker = json.dumps({**handle, "start": handle["start"] + 1})
    restarted = LocalRunner(store.layout)
    restarted.status(job)
    assert not any(init in inside for inside in members(groups))  # not let go
    job.worker = json.dumps(handle)
    wait_for(lambda: restarted.status(job).state == "succeeded")
    restarted.cleanup(job)
