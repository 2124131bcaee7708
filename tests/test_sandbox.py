"""What a run of the local runner cannot do to its host, and the limits it runs under (real
bubblewrap, real cgroups where the host has them; the server as root where the test says so)."""

import builtins
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import apply, drive, push, runs_of, tags, wait_for

from knitfab.engine import Engine
from knitfab.runners import gate
from knitfab.runners.limits import Cgroups, Limits, remove_cgroups
from knitfab.runners.local import LocalRunner
from knitfab.runners.runuser import give, run_user, stage
from knitfab.store import data, runs
from knitfab.store.db import Store
from knitfab.store.jobs import load_job

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap is not installed (make install)"),
]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as root in this test")
CGROUPS = Cgroups.probe() if os.geteuid() == 0 else Cgroups({})


def needs_cgroup(controller):
    return pytest.mark.skipif(controller not in CGROUPS.parents, reason=f"no {controller} cgroup on this host")


def run_plan(store, script, runner=None, resources=None, timeout=30):
    """Apply a plan running ``sh -c script`` on a dataset, and run the engine until it ends."""
    engine = Engine(store, runner or LocalRunner(store.layout, grace=1))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, log={"tags": ["type:log"]},
                 entrypoint=["sh", "-c", script], args=[], resources=resources or {})  # fmt: skip
    push(store, "type:dataset", files={"train.csv": "1,2,3\n"})
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"), timeout=timeout)
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    return run, (store.layout.data(run.log.knit_id) / "log").read_text()


def output(store, run, name):
    return store.layout.data(run.outputs[0].knit_id) / name


def refused(*commands):
    """A script that writes one line per command: the command, and whether it succeeded."""
    lines = "; ".join(f"if {c} 2>/dev/null; then echo 'ALLOWED {c}'; else echo 'refused {c}'; fi" for c in commands)
    return "{ " + lines + "; }"


def test_a_run_is_not_root_on_the_host(store):
    run, log = run_plan(store, "grep -E '^(Uid|Gid|CapEff)' /proc/self/status > /out/status; id -u > /out/id")
    assert run.status == "done", log
    status = dict(line.split(":", 1) for line in output(store, run, "status").read_text().splitlines())
    assert "0" not in status["Uid"].split() and "0" not in status["Gid"].split()
    assert int(status["CapEff"], 16) == 0
    host_uid = output(store, run, "id").stat().st_uid  # what the host sees of what the run wrote
    assert host_uid != 0 and int(output(store, run, "id").read_text()) == host_uid


@as_root
def test_the_run_user_is_what_the_host_sees_of_its_processes(store):
    runner = LocalRunner(store.layout, run_uid=65431)
    job = start_hanging(store, runner)
    pids = wait_for(lambda: _worker_processes(runner, job, uid=65431))
    assert pids  # the sandboxed sleep, as uid 65431 in the host's /proc
    stop(runner, job)


def test_a_run_cannot_read_host_secrets_or_other_data(store, tmp_path):
    other = push(store, "type:other", files={"secret.txt": "other data"})
    token = tmp_path / "token"
    token.write_text("s3cret")
    probes = [
        "cat /etc/shadow", "cat /etc/gshadow", f"ls {store.layout.root}", f"cat {store.layout.db}",
        f"ls {store.layout.data(other)}", f"cat {token}", f"ls {store.layout.handout}",
    ]  # fmt: skip
    run, log = run_plan(store, refused(*probes) + " > /out/probes; ls -A /root > /out/root || true")
    assert run.status == "done", log
    assert "ALLOWED" not in output(store, run, "probes").read_text()
    # /root holds at most the way to the server's Python, when that is installed below /root
    python = {Path(p).parts[2] for p in (sys.base_prefix, sys.exec_prefix) if p.startswith("/root/")}
    assert set(output(store, run, "root").read_text().split()) <= python


@as_root
@pytest.mark.skipif(not os.path.isdir("/opt"), reason="no /opt on this host")
def test_a_data_directory_inside_a_visible_system_directory_is_covered():
    root = Path(tempfile.mkdtemp(dir="/opt", prefix="knitfab-test-"))
    store = Store(root)
    try:
        probes = refused(f'test -n "$(ls -A {root})"', f"touch {root}/x", f"cat {store.layout.db}")
        run, log = run_plan(store, probes + " > /out/probes")
        assert run.status == "done", log
        assert "ALLOWED" not in output(store, run, "probes").read_text()
    finally:
        store.close()
        shutil.rmtree(root)


def test_a_run_cannot_write_the_kernel_settings_or_its_root(store):
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    probes = [
        # writing the value that is already there: harmless if this test ever fails
        "cat /proc/sys/kernel/core_pattern > /tmp/cp && cat /tmp/cp > /proc/sys/kernel/core_pattern",
        "echo 0 > /proc/sys/kernel/randomize_va_space_probe", "echo 500 > /proc/self/oom_score_adj",
        "ls /sys/kernel", "touch /etc/knitfab-probe", "touch /usr/knitfab-probe", "touch /knitfab-probe",
        "touch /dev/knitfab-probe", "touch /in/knitfab-probe",
    ]  # fmt: skip
    run, log = run_plan(store, refused(*probes) + " > /out/probes; touch /tmp/ok /dev/shm/ok /out/ok")
    assert run.status == "done", log
    assert "ALLOWED" not in output(store, run, "probes").read_text()
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


def test_inputs_uploaded_with_private_modes_are_readable_in_the_run(store):
    engine = Engine(store, LocalRunner(store.layout, grace=1))
    plan = apply(store, {"/in": ["type:private"]}, {"/out": ["type:model"]}, log={"tags": ["type:log"]},
                 entrypoint=["sh", "-c", "cat /in/deep/secret.csv > /out/copy"], args=[])  # fmt: skip
    knit_id = push(store, files={"deep/secret.csv": "private rows\n"})
    (store.layout.data(knit_id) / "deep" / "secret.csv").chmod(0o600)
    (store.layout.data(knit_id) / "deep").chmod(0o700)
    data.change_tags(store, knit_id, add=tags("type:private"))
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"))
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.status == "done", (store.layout.data(run.log.knit_id) / "log").read_text()
    assert output(store, run, "copy").read_text() == "private rows\n"
    assert (store.layout.data(knit_id) / "deep" / "secret.csv").stat().st_mode & 0o777 == 0o600  # modes kept


@as_root
def test_giving_inputs_to_the_run_uid_changes_links_never_their_targets(tmp_path):
    user = run_user()
    target = tmp_path / "host-file"
    target.write_text("the host's\n")
    tree = tmp_path / "input"
    (tree / "deep").mkdir(parents=True)
    (tree / "deep" / "rows.csv").write_text("1\n")
    (tree / "deep" / "link").symlink_to(target)
    (tree / "dirlink").symlink_to(tmp_path)
    give(user, [tree])
    owners = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in [tree, *tree.rglob("*")]}
    assert set(owners.values()) == {(user.uid, user.gid)}, owners
    assert (target.stat().st_uid, tmp_path.stat().st_uid) == (0, 0)  # what the links point at stays root's


@needs_cgroup("memory")
def test_a_run_over_its_memory_limit_is_oom_killed_with_137(store):
    grab = "python3 -c 'b = bytearray(256 * 1024 * 1024); b[::4096] = b\"x\" * len(b[::4096])'"
    run, log = run_plan(store, grab, resources={"memory": "64Mi"})
    assert run.status == "failed", log
    assert (run.exit_code, run.message) == (137, "(container main) OOMKilled: memory limit 64Mi exceeded")


def test_without_cgroups_memory_falls_back_to_a_data_size_limit(store):
    runner = LocalRunner(store.layout, grace=1)
    runner.cgroups = Cgroups({})
    run, log = run_plan(store, "python3 -c 'bytearray(256 * 1024 * 1024)'", runner=runner, resources={"memory": "64Mi"})
    assert run.status == "failed" and "MemoryError" in log, log


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "rlimit"])
def test_a_fork_bomb_is_bounded_by_the_process_limit_and_ends(store, cgroups):
    if cgroups and "pids" not in CGROUPS.parents:
        pytest.skip("no pids cgroup on this host")
    runner = LocalRunner(store.layout, grace=1, pids=48, run_uid=65430)  # its own uid: RLIMIT_NPROC is per uid
    if not cgroups:
        runner.cgroups = Cgroups({})
    # 200 processes that would outlive the run by 30 s (bounded, so that a host without the limit
    # is not harmed); the shell dies when it cannot fork, and its children with the sandbox
    bomb = "for i in $(seq 200); do sleep 30 & echo $i > /out/started; done"
    started = time.monotonic()
    run, log = run_plan(store, bomb, runner=runner, resources={"cpu": "500m"})
    assert run.status == "failed" and "Cannot fork" in log, ((run.exit_code, run.message), log[-300:])
    assert int(output(store, run, "started").read_text()) < 48
    assert time.monotonic() - started < 20


def test_writing_past_the_tmpfs_size_fails_inside_the_run(store):
    fill = "dd if=/dev/zero of=/tmp/big bs=1M count=16 2>&1; echo dd=$?; dd if=/dev/zero of=/dev/shm/big bs=1M count=16"
    run, log = run_plan(store, fill, resources={"memory": "256Mi", "ephemeral-storage": "8Mi"})
    assert run.status == "failed", log
    assert "No space left on device" in log and "dd=1" in log


@needs_cgroup("cpu")
@needs_cgroup("memory")
@needs_cgroup("pids")
def test_the_plan_resources_are_written_to_the_run_cgroups(store):
    runner = LocalRunner(store.layout, pids=100)
    job = start_hanging(store, runner, resources={"cpu": "500m", "memory": "96Mi"})
    wait_for(lambda: (runner.workdir(job.run_id) / gate.OPENED).exists())  # the quota: at the gate
    groups = [Path(g) for g in json.loads((runner.workdir(job.run_id) / "cgroups").read_text())]
    files = {f.name: f.read_text().strip() for g in groups for f in g.iterdir() if f.name in LIMIT_FILES}
    assert files.get("cpu.cfs_quota_us", files.get("cpu.max", "").split(" ")[0]) == "50000"
    assert files.get("memory.limit_in_bytes", files.get("memory.max")) == str(96 << 20)
    assert files["pids.max"] == "100"
    assert wait_for(lambda: _worker_processes(runner, job, uid=runner.user.uid))  # they are in it
    stop(runner, job)
    assert not any(g.exists() for g in groups)  # cleanup removes them


LIMIT_FILES = {"cpu.cfs_quota_us", "cpu.max", "memory.limit_in_bytes", "memory.max", "pids.max"}


@as_root
def test_a_run_s_limits_are_written_without_python_file_objects(monkeypatch):
    # A file object costs an fstat, an ioctl and two lseeks more than open/write/close: system
    # calls each giving the GIL away on the engine's thread, for every limit of every run.
    if not CGROUPS.parents:
        pytest.skip("no cgroup can be made for runs on this host")
    opened = []
    real_open = io.open
    monkeypatch.setattr(io, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    monkeypatch.setattr(builtins, "open", io.open)
    groups = CGROUPS.create(f"run-test-{os.getpid()}", Limits.of({"cpu": "250m", "memory": "32Mi"}))
    monkeypatch.undo()
    try:
        assert opened == []
        values = {f.name: f.read_text().split() for g in groups for f in g.iterdir() if f.name in LIMIT_FILES}
        assert values.get("cpu.cfs_quota_us", values.get("cpu.max", [""])[:1]) == ["25000"]
        for group in groups:  # the period is a new cgroup's own: the kernel's default, not written
            period = group / "cpu.cfs_period_us"
            assert not period.exists() or period.read_text().strip() == "100000"
    finally:
        remove_cgroups(groups)


def start_hanging(store, runner, resources=None):
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]}, entrypoint=["sleep", "60"], args=[], resources=resources or {})
    push(store, "type:dataset")
    engine.run_until_idle()
    ((run_id, status),) = runs_of(store, plan.plan_id)
    assert status == "running"
    return load_job(store, run_id)


def stop(runner, job):
    wait_for(lambda: runner.stop(job), timeout=30)
    runner.cleanup(job)


def _worker_processes(runner, job, uid):
    """Processes of the worker's group that run as ``uid`` in the host's view."""
    pgid = json.loads(job.worker)["pid"]
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if int(stat[2]) == pgid and int(status["Uid"].split()[0]) == uid:
            found.append(entry.name)
    return found


NON_ROOT_SERVER = """
import json, sys
sys.path.insert(0, sys.argv[2])
from helpers import apply, drive, push, runs_of
from knitfab.engine import Engine
from knitfab.runners.local import LocalRunner
from knitfab.runners.runuser import stage
from knitfab.store import runs
from knitfab.store.db import Store

store = Store(sys.argv[1])
runner = LocalRunner(store.layout, grace=1)
engine = Engine(store, runner)
script = "id -u > /out/id; cat /in/train.csv > /out/copy; python3 -c 'bytearray(256 << 20)'; echo $? > /out/py"
plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, log={"tags": ["type:log"]},
             entrypoint=["sh", "-c", script], args=[], resources={"memory": "64Mi"})
push(store, "type:dataset", files={"train.csv": "1,2,3\\n"})
drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"), timeout=30)
(run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
out = store.layout.data(run.outputs[0].knit_id)
files = {name: (out / name).read_text().strip() for name in ("id", "copy", "py")}
print(json.dumps({"status": run.status, "files": files, "enforced": runner.cgroups.enforced()}))
"""


def python_for(drop, path):
    """This Python, or the system's of the same version, if the unprivileged user can run it."""
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            version = subprocess.run(
                [*drop, python, "-c", "import sys, peewee; print(sys.version_info[:2])"],
                env={"PYTHONPATH": path},
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        except OSError:
            continue
        if version.strip() == str(sys.version_info[:2]):
            return python
    pytest.skip("no Python with the test's packages that an unprivileged user may run")


@as_root
@pytest.mark.skipif(not os.path.exists("/usr/bin/setpriv"), reason="setpriv is not installed")
def test_a_server_that_is_not_root_runs_runs_as_itself_with_rlimits():
    uid = 65429
    here = Path(__file__).parent
    path = os.pathsep.join([str(here.parent), *(p for p in sys.path if p.endswith("site-packages"))])
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
    python = python_for(drop, path)
    root = Path(tempfile.mkdtemp(prefix="knitfab-nonroot-"))
    os.chown(root, uid, uid)
    try:
        done = subprocess.run([*drop, python, "-c", NON_ROOT_SERVER, str(root / "data"), str(here)],
                              env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                              timeout=90)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(root)
    assert result["status"] == "done"
    assert result["files"] == {"id": str(uid), "copy": "1,2,3", "py": "1"}  # MemoryError: RLIMIT_DATA
    assert result["enforced"]["memory"] == "RLIMIT_DATA"


def test_staging_stages_only_what_the_run_uid_cannot_reach(tmp_path):
    closed = tmp_path / "closed"
    (closed / "data" / "x").mkdir(parents=True)
    closed.chmod(0o700)
    bwrap = ["bwrap", "--ro-bind", "/usr", "/usr", "--ro-bind", str(closed / "data" / "x"), "/in",
             "--setenv", "A", "--bind", "--ro-bind-try", "/nonexistent", "/x", "--", "--bind", "/", "/"]  # fmt: skip
    staged, outer = stage(bwrap)
    assert staged == ["bwrap", "--ro-bind", "/usr", "/usr", "--ro-bind", "/tmp/0/x", "/in",
                      "--setenv", "A", "--bind", "--", "--bind", "/", "/"]  # fmt: skip
    assert outer == ["bwrap", "--dev-bind", "/", "/", "--size", "1048576", "--tmpfs", "/tmp",
                     "--bind", str(closed / "data"), "/tmp/0", "--"]  # fmt: skip
    assert stage(["bwrap", "--ro-bind", "/usr", "/usr", "--", "true"])[1] == []  # nothing closed: no staging


def test_staging_keeps_open_sources_below_tmp_visible():
    """The stage is mounted over /tmp, so a server checked out under /tmp (its venv bound into the
    run) must be staged too, not hidden."""
    with tempfile.TemporaryDirectory(dir="/tmp") as checkout:
        os.chmod(checkout, 0o755)
        (Path(checkout) / "venv").mkdir()
        staged, outer = stage(["bwrap", "--ro-bind", f"{checkout}/venv", "/venv", "--", "true"])
    assert staged == ["bwrap", "--ro-bind", "/tmp/0/venv", "/venv", "--", "true"]
    assert outer[-4:] == ["--bind", checkout, "/tmp/0", "--"]


def test_staging_refuses_a_bwrap_option_it_does_not_know():
    with pytest.raises(ValueError, match="unknown bwrap option"):
        stage(["bwrap", "--bind-somehow", "/etc", "/host-etc", "--", "true"])


@as_root
def test_an_input_is_given_to_the_run_uid_once_however_many_runs_read_it(store, monkeypatch):
    from knitfab.runners import local

    walked = []
    monkeypatch.setattr(local, "give", lambda user, paths: (walked.extend(paths), give(user, paths)))
    engine = Engine(store, LocalRunner(store.layout, grace=1))
    copy = ["sh", "-c", "cat /in/rows.csv > /out/copy"]
    plans = [
        apply(
            store,
            {"/in": ["type:shared"]},
            {"/out": [f"type:copy{n}"]},
            entrypoint=copy,
            args=[],
            image=f"example.com/copy{n}:v1",
        )  # fmt: skip
        for n in range(2)  # two plans reading the same Data: two runs
    ]
    knit_id = push(store, "type:shared", files={"rows.csv": "1,2\n"})
    drive(engine, lambda: [s for p in plans for _, s in runs_of(store, p.plan_id)] == ["done", "done"])
    assert walked == [store.layout.data(knit_id)]
