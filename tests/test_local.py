"""The local runner's sandbox and its Job semantics on this host (real bubblewrap)."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from helpers import apply, drive, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.runners.local import LocalRunner, parse_capacity
from knitfab.runners.protocol import RunnerError
from knitfab.store import data, runs
from knitfab.store.jobs import load_job
from knitfab.tags import Tag

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap is not installed (make install)"),
]


def run_plan(store, script, runner=None, inputs=None, **extra):
    """Apply a plan running ``sh -c script``, push its dataset, and run the engine until it ends."""
    engine = Engine(store, runner or LocalRunner(store.layout, grace=1))
    plan = apply(store, inputs or {"/in/dataset": ["type:dataset"]}, {"/out/model": ["type:model"]},
                 log={"tags": ["type:log"]}, entrypoint=["sh", "-c", script], args=[], **extra)  # fmt: skip
    push(store, "type:dataset", files={"train.csv": "1,2,3\n"})
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"))
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    log = (store.layout.data(run.log.knit_id) / "log").read_text()
    return run, log


def output(store, run, name):
    return (store.layout.data(run.outputs[0].knit_id) / name).read_text()


def test_a_run_reads_its_input_and_writes_its_output(store):
    run, log = run_plan(store, "wc -l < /in/dataset/train.csv > /out/model/lines; echo trained")
    assert run.status == "done", log
    assert output(store, run, "lines").strip() == "1"
    assert log == "trained\n"


def test_mountpoints_under_tmp_are_not_hidden_by_the_private_tmp(store):
    run, log = run_plan(store, "cat /tmp/in/train.csv > /out/model/copy", inputs={"/tmp/in": ["type:dataset"]})
    assert run.status == "done", log
    assert output(store, run, "copy") == "1,2,3\n"


def test_inputs_are_read_only(store):
    run, log = run_plan(store, "echo x > /in/dataset/train.csv")
    assert run.status == "failed"
    assert run.exit_code == 2 and "Read-only file system" in log
    (dataset,) = run.inputs
    assert (store.layout.data(dataset.knit_id) / "train.csv").read_text() == "1,2,3\n"


def test_stdout_and_stderr_stream_into_the_log_as_they_are_made(store):
    runner = LocalRunner(store.layout, grace=1)
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, log={"tags": ["type:log"]},
                 entrypoint=["sh", "-c", "echo first; echo second >&2; sleep 30"], args=[])  # fmt: skip
    push(store, "type:dataset")
    engine.run_until_idle()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    job = load_job(store, run_id)
    wait_for(lambda: b"second" in b"".join(runner.logs(job)))
    assert b"".join(runner.logs(job)) == b"first\nsecond\n"
    runs.abort(store, run_id)
    drive(engine, lambda: runs.show_run(store, run_id).status == "failed")


def test_the_sandbox_hides_the_host(store):
    probe = (
        f"test ! -e {store.layout.root}; test ! -e /root/.ssh; touch /tmp/inside; "
        "test -w /out/model; echo $HOME $KNIT_RUN_ID > /out/model/env"
    )
    run, log = run_plan(store, probe)
    assert run.status == "done", log
    assert output(store, run, "env").split() == ["/tmp", run.run_id]
    assert not os.path.exists("/tmp/inside")


def listening_socket():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)

    def accept_one():
        try:
            server.accept()[0].close()
        except OSError:
            pass  # closed by the test: nobody came

    threading.Thread(target=accept_one, daemon=True).start()
    return server


@pytest.mark.parametrize("network, expected", [(False, "failed"), (True, "done")])
def test_network_only_when_the_operator_allows_it(store, network, expected):
    server = listening_socket()
    port = server.getsockname()[1]
    connect = f"python -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)\""
    run, log = run_plan(store, connect, runner=LocalRunner(store.layout, network=network))
    server.close()
    assert run.status == expected, log


def test_a_mapped_image_is_the_working_directory(store, tmp_path):
    image = tmp_path / "image"
    image.mkdir()
    (image / "train.py").write_text("import sys; open('/out/model/m', 'w').write('model'); print(sys.argv[1:])\n")
    runner = LocalRunner(store.layout, images={"example.com/train:v1": image})
    run, log = run_plan(store, "python3 train.py --epochs 1 && test ! -w /work/train.py", runner=runner)
    assert run.status == "done", log
    assert output(store, run, "m") == "model"
    assert log == "['--epochs', '1']\n"


def test_a_plan_without_entrypoint_says_what_to_add(store):
    engine = Engine(store, LocalRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=None, args=None)
    push(store, "type:dataset")
    engine.run_until_idle()
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.status == "failed"
    assert "has no entrypoint" in run.message and "entrypoint: [" in run.message
    with pytest.raises(RunnerError):
        LocalRunner(store.layout).start(load_job(store, run.run_id))


def test_capacity_is_the_machine_unless_told():
    capacity = parse_capacity("cpu=500m, nvidia.com/gpu=1")
    assert capacity["cpu"] == 0.5 and capacity["nvidia.com/gpu"] == 1 and capacity["memory"] > 0


ENGINE_PROCESS = textwrap.dedent(
    """
    import sys, threading
    from knitfab.engine import Engine
    from knitfab.runners.local import LocalRunner
    from knitfab.store.db import Store
    store = Store(sys.argv[1])
    Engine(store, LocalRunner(store.layout), poll=0.05).run_forever(threading.Event())
    """
)


def start_engine_process(store):
    return subprocess.Popen([sys.executable, "-c", ENGINE_PROCESS, str(store.layout.root)])


def slow_plan(store):
    script = "echo partial > /out/model/part; sleep 2; echo full > /out/model/final"
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out/model": ["type:model"]}, log={"tags": ["type:log"]},
                 entrypoint=["sh", "-c", script], args=[])  # fmt: skip
    push(store, "type:dataset")
    return plan


def running_run(store, plan):
    def started():
        rows = runs_of(store, plan.plan_id)
        return rows and rows[0][1] == "running" and rows[0][0]

    return wait_for(started)


def test_after_kill_9_of_the_server_a_live_run_is_found_again(store):
    plan = slow_plan(store)
    server = start_engine_process(store)
    run_id = running_run(store, plan)
    server.send_signal(signal.SIGKILL)
    server.wait()
    engine = Engine(store, LocalRunner(store.layout))
    engine.recover()
    drive(engine, lambda: runs.show_run(store, run_id).status == "done", timeout=30)
    run = runs.show_run(store, run_id)
    assert output(store, run, "final") == "full\n"


def test_after_kill_9_of_server_and_worker_the_run_fails_and_its_output_is_not_done(store):
    plan = slow_plan(store)
    server = start_engine_process(store)
    run_id = running_run(store, plan)
    server.send_signal(signal.SIGKILL)
    server.wait()
    (worker,) = store.one("SELECT worker FROM run WHERE run_id = ?", run_id)
    os.killpg(json.loads(worker)["pid"], signal.SIGKILL)
    engine = Engine(store, LocalRunner(store.layout))
    drive(engine, lambda: runs.show_run(store, run_id).status == "failed", timeout=30)
    run = runs.show_run(store, run_id)
    assert (run.exit_code, run.message) == (254, "worker for the run is not found")
    model = data.show_data(store, run.outputs[0].knit_id)
    assert Tag("knit#transient", "failed") in model.tags
    assert not (store.layout.data(model.knit_id) / "final").exists()


def start_true(store, runner):
    """The job of a run of ``true``, started by the engine on ``runner``."""
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=["true"], args=[])
    push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    return load_job(store, run_id)


def test_an_ended_worker_is_not_alive_even_while_its_sandbox_init_awaits_reaping(store):
    # The sandbox's init is re-parented to PID 1 when the worker ends; a container's PID 1 may
    # reap it late (seconds here) or never. The worker must count as ended all the same, or its
    # capacity is never given back.
    runner = LocalRunner(store.layout)
    job = start_true(store, runner)
    wait_for(lambda: runner.status(job).state.value == "succeeded")
    assert runner.stop(job) is True
    runner.cleanup(job)  # its cgroups


def test_a_plan_can_run_python_directly(store):
    # bwrap looks the entrypoint up itself: "python" must resolve to the server's Python
    engine = Engine(store, LocalRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:x"]}, entrypoint=["python", "-c"],
                 args=["import sys; open('/out/v', 'w').write(sys.version)"])  # fmt: skip
    push(store, "type:dataset")
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"))
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.status == "done"
    assert output(store, run, "v").startswith("3.")


def test_an_ended_worker_is_known_ended_from_its_cgroups_without_reading_proc(store, monkeypatch):
    # Its shell left unreaped (a zombie, as a worker of a server that restarted may be): the
    # process group still exists, and only the run's cgroups say cheaply that nothing runs.
    runner = LocalRunner(store.layout)
    monkeypatch.setattr(runner, "_wait", lambda proc, info=None: None)
    job = start_true(store, runner)
    shell = runner._procs.pop(job.run_id)
    try:
        if not runner._cgroups_of(job):
            pytest.skip("no cgroup can be made for runs on this host: liveness falls back to /proc")
        wait_for(lambda: runner.status(job).state.value == "succeeded")
        wait_for(lambda: Path(f"/proc/{shell.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z")
        scans = []
        real_scandir = os.scandir
        monkeypatch.setattr(os, "scandir", lambda path=".": scans.append(str(path)) or real_scandir(path))
        assert runner.stop(job) is True
        runner.cleanup(job)
        assert "/proc" not in scans
    finally:
        shell.wait(timeout=10)


CRASH_BEFORE_THE_FINISH_COMMIT = textwrap.dedent(
    """
    import os, signal, sys
    from knitfab.engine import Engine
    from knitfab.runners.local import LocalRunner
    from knitfab.store.db import Store
    store = Store(sys.argv[1])
    engine = Engine(store, LocalRunner(store.layout))
    def killed(now):  # kill -9 once every run is stopped, cleaned up and published, before the commit
        if engine._settled:
            os.kill(os.getpid(), signal.SIGKILL)
        return False
    engine._record_finished = killed
    while True:
        engine.tick()
    """
)


def test_a_kill_9_between_publishing_outputs_and_their_batch_commit_loses_no_run(store):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out/model": ["type:model"]}, log={"tags": ["type:log"]},
                 entrypoint=["sh", "-c", "echo made > /out/model/final"], args=[])  # fmt: skip
    for _ in range(3):
        push(store, "type:dataset")
    crashed = subprocess.run([sys.executable, "-c", CRASH_BEFORE_THE_FINISH_COMMIT, str(store.layout.root)], timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    assert "completing" in [s for _, s in runs_of(store, plan.plan_id)]  # the kill came before the commit
    drive(Engine(store, LocalRunner(store.layout)), lambda: {s for _, s in runs_of(store, plan.plan_id)} == {"done"})
    for run in runs.find_runs(store, plan_ids=[plan.plan_id]):
        assert output(store, run, "final") == "made\n"


def test_stop_signals_and_returns_at_once_without_sleeping(store, monkeypatch):
    from knitfab.runners import local

    runner = LocalRunner(store.layout, grace=0.3)
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=["sh", "-c", "trap '' TERM; sleep 30"], args=[])
    push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    job = load_job(store, run_id)
    wait_for(lambda: runner.status(job).state == "running")

    def no_sleep(seconds):
        raise AssertionError(f"stop() slept {seconds} s")

    monkeypatch.setattr(
        local, "time", type("T", (), {"monotonic": staticmethod(local.time.monotonic), "sleep": no_sleep})
    )
    assert runner.stop(job) is False  # SIGTERM sent (and ignored): still ending, and no wait for it
    wait_for(lambda: runner.stop(job))  # SIGKILL once the grace is over; no call slept
    monkeypatch.undo()
    runner.cleanup(job)
    assert not runner.workdir(run_id).exists()  # moved out of workers/ at once, deleted off-thread


def test_one_thread_reaps_every_worker_and_each_end_wakes_the_engine(store):
    # A thread started per run costs the engine's thread its creation and a turn at the GIL.
    woken = []
    runner = LocalRunner(store.layout, on_exit=lambda: woken.append(1))
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=["sh", "-c", "sleep 0.5"], args=[],
                 resources={"cpu": "100m", "memory": "64Mi"})  # fmt: skip
    for _ in range(4):
        push(store, "type:dataset")
    before = set(threading.enumerate())
    engine.project(), engine.initialize(), engine.start()
    jobs = [load_job(store, run_id) for run_id, _ in runs_of(store, plan.plan_id)]
    assert len(jobs) == 4 and all(runner._unreaped_child(job) for job in jobs)
    assert len(set(threading.enumerate()) - before) <= 1  # the reaper, at most (it may be there already)
    wait_for(lambda: len(woken) == 4)
    assert not any(runner._unreaped_child(job) for job in jobs)  # reaped: no zombie left
    for job in jobs:
        assert runner.status(job).state == "succeeded"
        runner.cleanup(job)


def test_the_engine_loads_a_running_run_again_only_once_its_worker_has_ended(store, monkeypatch):
    # Every tick used to load every running run and ask its status: 16 times a trivial run here.
    runner = LocalRunner(store.layout)
    engine = Engine(store, runner)
    runner.on_exit = engine.wake
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=["sh", "-c", "sleep 0.5"], args=[])
    push(store, "type:dataset")
    asked = []
    real_status = runner.status
    monkeypatch.setattr(runner, "status", lambda job: asked.append(job.run_id) or real_status(job))
    engine.project(), engine.initialize(), engine.start(), engine.watch()
    ((run_id, status),) = runs_of(store, plan.plan_id)
    assert status == "running" and asked == [run_id]
    for _ in range(20):
        engine.watch()
    assert asked == [run_id]  # its worker is a child of this runner, not reaped yet
    wait_for(lambda: engine._wake.is_set())  # the reaper reaped it
    engine.watch()
    assert asked == [run_id, run_id] and runs_of(store, plan.plan_id) == [(run_id, "completing")]
    engine.run_until_idle()


def test_an_ended_run_is_stopped_and_cleaned_up_with_one_read_of_its_cgroups(store, monkeypatch):
    # The first cgroup the worker entered holds whatever is left of the run; once stop() has
    # found it empty, cleanup() need not look again (nothing outside the run can fork into it).
    runner = LocalRunner(store.layout)
    job = start_true(store, runner)
    groups = runner._cgroups_of(job)
    if not groups:
        pytest.skip("no cgroup can be made for runs on this host: liveness falls back to /proc")
    wait_for(lambda: runner.status(job).state.value == "succeeded")
    wait_for(lambda: not runner._unreaped_child(job))
    reads = []
    real_read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or real_read_text(self, *a, **k))
    assert runner.stop(job) is True
    runner.cleanup(job)
    assert [p for p in reads if p.name in ("cgroup.procs", "cgroup.events")] == [reads[-1]]
    assert reads[-1].parent == groups[0]
    assert not any(group.exists() for group in groups)
