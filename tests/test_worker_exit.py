"""The worker's chain ends in the run's exit code without a shell waiting for it: the outermost
bwrap writes it into the worker's ``exit`` file (``--json-status-fd``), and a restarted server
reads it from there (real bubblewrap)."""

import json
import os
from pathlib import Path

import pytest
from helpers import apply, drive, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.runners import local
from knitfab.runners.local import EXIT_PLACEHOLDER, LocalRunner, exit_code_in
from knitfab.runners.procs import pgid_of
from knitfab.store import runs
from knitfab.store.jobs import load_job

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap is not installed")


def run(store, script, runner=None):
    engine = Engine(store, runner or LocalRunner(store.layout))
    tag = f"script:{script}"  # each its own plan and Data
    plan = apply(store, {"/in": [tag]}, entrypoint=["sh", "-c", script], args=[])
    push(store, tag)
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"))
    (found,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    return found


def started(store, runner, script):
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=["sh", "-c", script], args=[])
    push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    return load_job(store, run_id)


def outside_the_sandbox(pgid):
    """The commands of the worker's processes that are not in the run's pid namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pgid_of(int(entry.name)) == pgid:
            status = (entry / "status").read_text()
            nspids = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[1:]
            if len(nspids) == 1:
                found.append((entry / "comm").read_text().strip())
    return found


def test_no_shell_waits_for_the_run_the_worker_is_its_bwrap(store):
    runner = LocalRunner(store.layout)
    job = started(store, runner, "sleep 5")
    pgid = json.loads(job.worker)["pid"]
    wait_for(lambda: "sleep" in (Path(f"/proc/{p}/comm").read_text().strip() for p in _group(pgid)))
    assert Path(f"/proc/{pgid}/comm").read_text().strip() == "bwrap"
    assert set(outside_the_sandbox(pgid)) == {"bwrap"}  # the staging one (as root) and the run's
    runner.stop(job), runner.cleanup(job)


def _group(pgid):
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and pgid_of(int(e.name)) == pgid]


@pytest.mark.parametrize("status_fd", [True, False], ids=["bwrap-status", "shell-fallback"])
def test_the_run_exit_code_is_the_run_s(store, monkeypatch, status_fd):
    monkeypatch.setattr(local, "bwrap_supports", lambda option: status_fd)
    done, failed = run(store, "true"), run(store, "exit 3")
    assert (done.status, done.exit_code) == ("done", 0)
    assert (failed.status, failed.exit_code, failed.message) == ("failed", 3, "(container main) Error")


def test_a_killed_run_has_128_plus_the_signal(store):
    failed = run(store, "kill -9 $$")
    assert (failed.status, failed.exit_code, failed.message) == ("failed", 137, "(container main) killed by SIGKILL")


def test_a_restarted_server_reads_the_exit_code_the_worker_left(store):
    runner = LocalRunner(store.layout)
    job = started(store, runner, "exit 5")
    wait_for(lambda: not runner._unreaped_child(job))
    restarted = LocalRunner(store.layout)  # knows of the worker only what its directory says
    status = restarted.status(job)
    assert (status.state, status.code) == ("failed", 5)
    restarted.cleanup(job)


def test_a_worker_whose_bwrap_ends_before_the_run_begins_fails_with_bwrap_s_code(store, monkeypatch):
    # bwrap refuses its command line before it forks anything: no status is written, the
    # reaped worker's own exit code is the run's (not 254, "worker not found").
    runner = LocalRunner(store.layout)
    sandbox = runner.sandbox
    monkeypatch.setattr(runner, "sandbox", lambda job: [sandbox(job)[0], "--uid", "not-a-number", *sandbox(job)[1:]])
    failed = run(store, "true", runner)
    assert (failed.status, failed.exit_code) == ("failed", 1)


@pytest.mark.parametrize(
    "text, code",
    [
        (EXIT_PLACEHOLDER, None),
        ("0\n" + EXIT_PLACEHOLDER[2:], 0),  # the shell's number over the placeholder
        ('{ "child-pid": 12, "mnt-namespace": 4026532181 }\n' + " " * 40, None),  # started, not ended
        ('{ "child-pid": 12 }\n{ "exit-code": 7 }\n' + " " * 40, 7),
        ('{ "child-pid": 12 }\n{ "exit-co', None),  # being written
    ],
)
def test_the_exit_file_says_the_code_once_the_worker_has_ended(text, code):
    assert exit_code_in(text) == code
