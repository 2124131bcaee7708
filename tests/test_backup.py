"""knitfab backup / restore: a consistent copy of a running server's data directory."""

import json
import threading

import pytest
from apiclient import Api
from fake_runner import FakeRunner
from helpers import apply, push, read_tree, runs_of, wait_for
from peewee import SqliteDatabase

from knitfab.__main__ import main
from knitfab.api import render
from knitfab.engine import Engine
from knitfab.store import data, runs
from knitfab.store.backup import BackupError, backup, restore
from knitfab.store.db import Store
from knitfab.store.migrations import LATEST, current_version, migrate


def done_data(api) -> dict[str, dict]:
    return {d["knitId"]: d for d in api.json("GET", "/api/data/") if not any("transient" in t for t in d["tags"])}


def plans(api) -> None:
    chain = [("type:dataset", "type:model"), ("type:model", "type:report")]
    for n, (given, made) in enumerate(chain):
        api.json("POST", "/api/plans/", json={
            "image": f"step{n}:v1", "entrypoint": ["fake"], "args": ["succeed"],
            "inputs": [{"path": "/in", "tags": [given]}], "outputs": [{"path": "/out", "tags": [made]}],
            "log": {"tags": ["type:log"]},
        })  # fmt: skip


@pytest.mark.slow
def test_a_backup_under_pushes_and_runs_restores_every_done_data_and_edge(server, api, tmp_path):
    plans(api)
    stop, pushed = threading.Event(), []

    def pusher():
        client = Api(api.url)
        while not stop.is_set():
            n = len(pushed)
            pushed.append(client.push({f"part{n}.csv": f"{n}," * 5000, "sub/readme": "hi\n"}, "type:dataset"))
        client.http.close()

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        wait_for(lambda: len(pushed) >= 5 and len(done_data(api)) >= 12)
        before = done_data(api)
        manifest = backup(server.store.layout.root, tmp_path / "backup")
        wait_for(lambda: len(pushed) >= len(before) // 5 + 8)  # the pushes and runs went on meanwhile
    finally:
        stop.set()
        thread.join(timeout=60)
    source = server.store
    restore(tmp_path / "backup", tmp_path / "restored")
    restored = Store(tmp_path / "restored")
    try:
        kept = {d["knitId"]: d for d in render.data_list(data.find_data(restored))}  # as the API shows them
        assert set(before) <= set(kept) and set(manifest["data"]) >= set(before)
        finished = [k for k, d in kept.items() if not any("transient" in t for t in d["tags"])]
        for knit_id in finished:  # every Data done at the backup's moment, byte for byte
            assert read_tree(restored.layout.data(knit_id)) == read_tree(source.layout.data(knit_id))
        for knit_id in before:  # and every lineage edge: producing run, its inputs and outputs
            run_id = kept[knit_id]["upstream"]["run"]["runId"]
            mine, theirs = runs.show_run(restored, run_id), runs.show_run(source, run_id)
            assert (mine.inputs, mine.outputs, mine.log) == (theirs.inputs, theirs.outputs, theirs.log)
            assert kept[knit_id]["upstream"] == before[knit_id]["upstream"]
            # a push tags its Data after the upload: the backup may have come between the two
            assert set(before[knit_id]["tags"]) <= set(kept[knit_id]["tags"])
    finally:
        restored.close()


def test_restore_checks_every_checksum_and_leaves_nothing_when_one_fails(store, tmp_path):
    knit_id = push(store, "type:dataset", files={"a.txt": "original"})
    backup(store.layout.root, tmp_path / "backup")
    (tmp_path / "backup" / "data" / knit_id / "a.txt").write_text("tampered")
    with pytest.raises(BackupError, match="does not match its checksum"):
        restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and list(tmp_path.iterdir()) == [store.layout.root, tmp_path / "backup"]


def test_backup_and_restore_refuse_a_folder_in_use(store, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(BackupError, match="must be an empty directory"):
        backup(store.layout.root, tmp_path / "full")
    backup(store.layout.root, tmp_path / "backup")
    with pytest.raises(BackupError, match="must be an empty directory"):
        restore(tmp_path / "backup", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "mine"


def test_a_manifest_cannot_name_paths_outside(store, tmp_path):
    backup(store.layout.root, tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    manifest["files"]["../../etc/evil"] = {"type": "link", "target": "/"}
    (tmp_path / "backup" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="outside the backup"):
        restore(tmp_path / "backup", tmp_path / "restored")


def test_symlinks_and_empty_folders_survive(store, tmp_path):
    knit_id = push(store, files={"a.txt": "x"})
    folder = store.layout.data(knit_id)
    (folder / "empty").mkdir()
    (folder / "link").symlink_to("a.txt")
    backup(store.layout.root, tmp_path / "backup")
    restore(tmp_path / "backup", tmp_path / "restored")
    copy = tmp_path / "restored" / "data" / knit_id
    assert (copy / "empty").is_dir() and (copy / "link").readlink().as_posix() == "a.txt"


def test_an_older_schema_backup_is_upgraded_on_restore(tmp_path):
    old = tmp_path / "old"
    (old / "data").mkdir(parents=True)
    legacy = SqliteDatabase(str(old / "knitfab.db"))
    migrate(legacy, target=1)  # a data directory written by the first schema
    (plan_id, output_id) = legacy.execute_sql(
        "SELECT p.plan_id, o.id FROM plan p JOIN output o ON o.plan_id = p.plan_id"
    ).fetchone()
    legacy.execute_sql("INSERT INTO run (run_id, plan_id, status, updated_at) VALUES ('r1', ?, 'done', 1)", (plan_id,))
    legacy.execute_sql(
        "INSERT INTO data (knit_id, run_id, output_id, timestamp) VALUES ('k1', 'r1', ?, 1)", (output_id,)
    )
    legacy.close()
    (old / "data" / "k1").mkdir()
    (old / "data" / "k1" / "f").write_text("from v1")
    assert backup(old, tmp_path / "backup")["schema_version"] == 1
    restore(tmp_path / "backup", tmp_path / "restored")
    store = Store(tmp_path / "restored")
    try:
        assert current_version(store.db) == LATEST
        assert data.show_data(store, "k1").upstream.run.plan.name == "knit#uploaded"
        assert (store.layout.data("k1") / "f").read_text() == "from v1"
    finally:
        store.close()


def test_the_commands(store, tmp_path, capsys):
    push(store, files={"a.txt": "x"})
    assert main(["backup", str(tmp_path / "b"), "--data-dir", str(store.layout.root)]) == 0
    assert main(["restore", str(tmp_path / "b"), "--data-dir", str(tmp_path / "r")]) == 0
    assert "restored 1 Data" in capsys.readouterr().out
    assert main(["restore", str(tmp_path / "b"), "--data-dir", str(tmp_path / "r")]) == 1
    assert "must be an empty directory" in capsys.readouterr().err


def test_a_run_in_flight_at_the_backup_fails_after_the_restore_and_can_be_retried(store, tmp_path):
    plan = apply(store, {"/in": ["type:dataset"]}, args=["hang"])
    push(store, "type:dataset")
    Engine(store, FakeRunner(store.layout)).run_until_idle()
    ((run_id, status),) = runs_of(store, plan.plan_id)
    assert status == "running"
    backup(store.layout.root, tmp_path / "backup")
    restore(tmp_path / "backup", tmp_path / "restored")
    restored = Store(tmp_path / "restored")
    try:
        Engine(restored, FakeRunner(restored.layout)).run_until_idle()  # its worker is not there
        run = runs.show_run(restored, run_id)
        assert run.status == "failed" and run.exit_code == 254
        runs.retry(restored, run_id)
        assert runs.show_run(restored, run_id).status == "waiting"
    finally:
        restored.close()
