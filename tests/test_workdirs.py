"""The local runner's workers' directories (the state of live processes: exit file, gate FIFOs,
handle) live on a tmpfs when the server is root, off the data disk, in a folder that is the
server's alone; an older server's workers, on the disk, are still found."""

import os
import subprocess
from pathlib import Path

import pytest
from helpers import apply, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.runners import workdirs
from knitfab.runners.local import LocalRunner
from knitfab.runners.workdirs import Workdirs, tmpfs_mounts
from knitfab.store.jobs import load_job

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the workers' state goes to a tmpfs when the server is root")


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted for the test, standing for /dev/shm."""
    path = tmp_path / "shm"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def on_tmpfs(path: Path) -> bool:
    mounts = tmpfs_mounts()
    return any(str(p) in mounts for p in (path, *path.parents))


def start_run(store, runner, script: str):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:x"]}, entrypoint=["sh", "-c", script], args=[])
    push(store, "type:dataset")
    engine = Engine(store, runner)
    engine.project(), engine.initialize(), engine.start()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    return load_job(store, run_id)


@pytest.mark.slow
def test_a_run_s_worker_directory_is_on_a_tmpfs_the_run_cannot_see_and_nothing_of_it_on_the_data_disk(store):
    runner = LocalRunner(store.layout)
    job = start_run(store, runner, "sleep 0.3; ls -a /dev/shm /run > /out/seen 2>&1; true")
    workdir = runner.workdir(job.run_id)
    assert on_tmpfs(workdir) and (workdir / "exit").exists() and (workdir / "handle").exists()
    assert list((store.layout.root / "workers").iterdir()) == []  # the data disk has none of it
    assert os.stat(workdir.parent).st_mode & 0o777 == 0o700
    wait_for(lambda: runner.status(job).state == "succeeded")
    seen = (store.layout.staging(job.outputs[0].knit_id) / "seen").read_text()
    assert "/dev/shm:\n.\n..\n" in seen and "knitfab" not in seen  # its /dev/shm is its own, empty
    runner.cleanup(job)
    assert not workdir.exists()


def test_the_folder_is_the_data_directory_s_own_and_closed_to_others(tmpfs, tmp_path):
    a = Workdirs(tmp_path / "a", tmpfs=(str(tmpfs),))
    b = Workdirs(tmp_path / "b", tmpfs=(str(tmpfs),))
    assert a.folder.parent.parent == b.folder.parent.parent == tmpfs / "knitfab" and a.folder != b.folder
    assert os.stat(tmpfs / "knitfab").st_mode & 0o777 == 0o700
    assert a.trash.parent == a.folder.parent  # discarded with one rename on the same tmpfs


def test_the_folders_of_data_directories_that_are_gone_are_removed(tmpfs, tmp_path):
    for name in "abc":
        (tmp_path / name).mkdir()
    gone = Workdirs(tmp_path / "a", tmpfs=(str(tmpfs),))
    (gone.folder / "run-1").mkdir()  # a worker's state its server never cleaned up
    making = tmpfs / "knitfab" / "being-made"
    making.mkdir()  # another runner's, before it says whose it is
    (tmp_path / "a").rmdir()
    kept = Workdirs(tmp_path / "b", tmpfs=(str(tmpfs),))
    assert not gone.folder.parent.exists() and making.exists() and kept.folder.exists()
    assert Workdirs(tmp_path / "c", tmpfs=(str(tmpfs),)) and kept.folder.exists()  # b is still there


def test_a_knitfab_folder_another_user_made_first_is_not_used(tmpfs, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmpfs / "knitfab").symlink_to(elsewhere)
    assert Workdirs(tmp_path / "a", tmpfs=(str(tmpfs),)).folder == tmp_path / "a" / "workers"
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    (tmpfs / "knitfab").unlink()
    (tmpfs / "knitfab").mkdir(mode=0o777)
    os.chown(tmpfs / "knitfab", 12345, 12345)
    assert Workdirs(tmp_path / "a", tmpfs=(str(tmpfs),)).folder == tmp_path / "a" / "workers"
    assert list((tmpfs / "knitfab").iterdir()) == []


def test_a_candidate_that_is_no_tmpfs_is_not_used(tmp_path):
    (tmp_path / "disk").mkdir()
    assert Workdirs(tmp_path / "a", tmpfs=(str(tmp_path / "disk"),)).folder == tmp_path / "a" / "workers"
    assert not (tmp_path / "disk" / "knitfab").exists()


@pytest.mark.slow
def test_a_run_an_older_server_started_on_the_disk_is_found_there_and_ends(store, monkeypatch):
    monkeypatch.setattr(workdirs, "TMPFS", ())  # the older server: workers in <data-dir>/workers
    older = LocalRunner(store.layout)
    job = start_run(store, older, "sleep 0.5; echo ran > /out/f")
    on_disk = store.layout.root / "workers" / job.run_id
    assert older.workdir(job.run_id) == on_disk
    monkeypatch.undo()
    upgraded = LocalRunner(store.layout)  # another process: it knows the run only from the store
    assert upgraded.workdir(job.run_id) == on_disk and on_tmpfs(upgraded.workdir("a-new-run"))
    wait_for(lambda: upgraded.status(job).state == "succeeded")
    upgraded.cleanup(job)
    assert not on_disk.exists()
