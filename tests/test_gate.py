"""The run's cgroups are in force from the moment its sandbox exists and before anything of the
run executes, never during the launch: the launch is not throttled by the run's CPU quota, the
run is limited as before, and a sandbox nobody let go executes nothing (a restarted server lets
it go). On cgroup v1 the worker enters them itself and the server writes only the quota at the
gate: moving another process between cgroups costs the kernel an RCU grace period per run."""

import json
import os
from pathlib import Path

import pytest
from helpers import apply, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.runners import gate, limits
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


def quota_over(pid, groups):
    """Whether a CPU quota of the run's cgroups applies to ``pid``."""
    for group, inside in zip(groups, members(groups), strict=True):
        for name in ("cpu.cfs_quota_us", "cpu.max"):
            if pid in inside and (group / name).exists() and (group / name).read_text().split()[0] not in ("-1", "max"):
                return True
    return False


def test_everything_the_run_executes_is_in_its_cgroups_and_the_launch_is_not(store):
    runner = LocalRunner(store.layout)
    job = start(store, runner, "sleep 5 & sleep 5; echo done > /out/f")
    groups = runner._cgroups_of(job)
    wait_for(lambda: sum(worker_processes(job).values()) >= 4)  # init, sh and its two sleeps
    processes = worker_processes(job)
    sandboxed = {pid for pid, inside in processes.items() if inside}
    for inside in members(groups):
        assert sandboxed <= inside
        if runner.user.privileged:
            assert json.loads(job.worker)["pid"] not in inside  # the staging bwrap: knitfab's, not the run's
    if "cpu" in runner.cgroups.parents:
        assert all(quota_over(pid, groups) for pid in sandboxed)
    runner.stop(job), runner.cleanup(job)


def written_kernel_files(monkeypatch) -> list[str]:
    written = []
    real = limits.write_value
    monkeypatch.setattr(limits, "write_value", lambda path, value: written.append(path.name) or real(path, value))
    return written


def test_a_run_started_alone_enters_its_v1_cgroups_itself(store, monkeypatch):
    # Writing another process's pid into cgroup.procs waits for an RCU grace period (5-15 ms on
    # this VM) when no other move came shortly before; a process writing 0 into a v1 group's
    # tasks moves itself without one.
    runner = LocalRunner(store.layout)
    if not runner.cgroups.entered_by_worker:
        pytest.skip("the run's cgroups are not all v1 here: the server moves the sandbox at its gate")
    written = written_kernel_files(monkeypatch)
    job = start(store, runner, "echo ran > /out/f")
    wait_for(lambda: runner.status(job).state == "succeeded")
    runner.cleanup(job)
    assert "cgroup.procs" not in written and "cpu.cfs_quota_us" in written


def test_runs_started_while_another_waits_at_its_gate_are_moved_there_by_the_server(store, monkeypatch):
    # In a burst of starts the server's moves share grace periods, and a worker entering by
    # itself would cost the machine more (an sh, the sandbox's setup charged to the run's memcg).
    runner = LocalRunner(store.layout)
    if not runner.cgroups.entered_by_worker:
        pytest.skip("the run's cgroups are not all v1 here: the server moves every sandbox at its gate")
    held, real_open = [], runner._open_gate
    monkeypatch.setattr(runner, "_open_gate", lambda *args: held.append(args))  # until both have started
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:x"]}, entrypoint=["sh", "-c", "sleep 1"], args=[],
                 resources={"cpu": "100m", "memory": "64Mi"})  # fmt: skip
    push(store, "type:dataset"), push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start()
    jobs = [load_job(store, run_id) for run_id, _ in runs_of(store, plan.plan_id)]
    wait_for(lambda: len(held) == 2)
    inits = {job.run_id: gate._sandbox_init(json.loads(job.worker)["pid"]) for job in jobs}
    groups = {job.run_id: runner._cgroups_of(job) for job in jobs}
    inside = {job.run_id: all(inits[job.run_id] in m for m in members(groups[job.run_id])) for job in jobs}
    assert sorted(inside.values()) == [False, True]  # the first entered by itself, the second waits
    written = written_kernel_files(monkeypatch)
    for args in held:
        real_open(*args)
    moved = next(run_id for run_id, entered in inside.items() if not entered)
    assert written.count("cgroup.procs") == len(groups[moved])  # by the server, at its gate
    assert all(quota_over(inits[job.run_id], groups[job.run_id]) for job in jobs)
    for job in jobs:
        wait_for(lambda job=job: runner.status(job).state == "succeeded")
        runner.cleanup(job)


def test_a_sandbox_nobody_lets_go_executes_nothing_until_a_restarted_server_does(store, monkeypatch):
    runner = LocalRunner(store.layout)
    monkeypatch.setattr(runner, "_open_gate", lambda *args: None)  # the server died before it opened the gate
    job = start(store, runner, "sleep 1; echo ran > /out/f")
    groups = runner._cgroups_of(job)
    pgid = json.loads(job.worker)["pid"]
    init = wait_for(lambda: gate._sandbox_init(pgid))
    output = store.layout.staging(job.outputs[0].knit_id) / "f"
    assert not output.exists() and not quota_over(init, groups)  # its setup is not throttled
    assert runner.status(job).state == "running"  # it waits (a child of this server: not orphaned)

    restarted = LocalRunner(store.layout)  # knows of the worker only what its directory says
    restarted.status(job)
    if "cpu" in restarted.cgroups.parents:
        assert quota_over(init, groups)  # let go with its quota
    wait_for(lambda: restarted.status(job).state == "succeeded")
    assert output.read_text() == "ran\n"
    restarted.cleanup(job)


def test_the_run_holds_neither_end_of_its_gate_nor_its_exit_file(store):
    # bwrap closes its --block-fd, --info-fd and --json-status-fd before the run's command: the
    # run can neither write its own "go", a pid for the server to put in its cgroups, nor an exit code.
    runner = LocalRunner(store.layout)
    job = start(store, runner, "sleep 5")
    wait_for(lambda: sum(worker_processes(job).values()) >= 2)  # init and sleep
    workdir = runner.workdir(job.run_id)
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
    assert not quota_over(init, groups) and not (restarted.workdir(job.run_id) / gate.OPENED).exists()  # not let go
    job.worker = json.dumps(handle)
    wait_for(lambda: restarted.status(job).state == "succeeded")
    restarted.cleanup(job)
