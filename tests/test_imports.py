"""knitfab import: a directory on the server's disk becomes a Data of the pseudo plan knit#imported."""

import json
import os

import pytest
from fake_runner import FakeRunner
from helpers import apply, read_tree, runs_of

from knitfab.__main__ import main
from knitfab.engine import Engine
from knitfab.errors import BadRequest
from knitfab.store import data, runs
from knitfab.store.imports import import_directory
from knitfab.store.records import Mountpoint


def folder(root, files=None):
    root.mkdir()
    for rel, text in (files or {"images.gz": "pixels", "sub/labels.gz": "digits"}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_an_imported_directory_is_a_done_data_whose_upstream_is_the_import(store, tmp_path):
    source = folder(tmp_path / "mnist")
    expected = read_tree(source)
    detail = import_directory(store, source, ["type:dataset", "project:x"])
    knit_id = detail.knit_id
    assert not source.exists()  # moved in, not copied
    assert read_tree(store.layout.data(knit_id)) == expected
    assert [str(t) for t in detail.tags if not t.is_system] == ["project:x", "type:dataset"]
    assert any(t.key == "knit#timestamp" for t in detail.tags)
    upstream = detail.upstream
    assert upstream.point == Mountpoint("/imported", [])
    assert upstream.run.status == "done" and upstream.run.plan.name == "knit#imported"
    assert upstream.run.exit_code is None
    run = runs.show_run(store, upstream.run.run_id)
    assert run.inputs == [] and run.log is None


def test_plans_take_an_imported_data_at_once(store, tmp_path):
    plan = apply(store, {"/in": ["type:dataset"]}, args=["succeed"])
    import_directory(store, folder(tmp_path / "d"), ["type:dataset"])
    Engine(store, FakeRunner(store.layout)).run_until_idle()
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["done"]


def test_every_import_is_a_run_of_the_same_pseudo_plan(store, tmp_path):
    a = import_directory(store, folder(tmp_path / "a"))
    b = import_directory(store, folder(tmp_path / "b"), copy=True)
    assert a.upstream.run.plan == b.upstream.run.plan
    assert (tmp_path / "b").exists()  # --copy leaves the original


@pytest.mark.parametrize("make, words", [
    (lambda root: os.mkfifo(root / "pipe"), "device, fifo or socket"),
    (lambda root: (root / "out").symlink_to("../../etc/passwd"), "points outside"),
    (lambda root: (root / "abs").symlink_to("/etc/passwd"), "points outside"),
])  # fmt: skip
def test_what_a_data_cannot_hold_is_refused_and_nothing_is_left(store, tmp_path, make, words):
    source = folder(tmp_path / "bad")
    make(source)
    with pytest.raises(BadRequest, match=words):
        import_directory(store, source)
    assert source.exists() and data.find_data(store) == []


def test_links_inside_the_directory_are_kept(store, tmp_path):
    source = folder(tmp_path / "d")
    (source / "sub" / "again").symlink_to("../images.gz")
    detail = import_directory(store, source)
    assert (store.layout.data(detail.knit_id) / "sub" / "again").read_text() == "pixels"


def test_system_tags_and_missing_directories_are_refused(store, tmp_path):
    with pytest.raises(BadRequest):
        import_directory(store, folder(tmp_path / "d"), ["knit#id:mine"])
    with pytest.raises(BadRequest, match="is not a directory"):
        import_directory(store, tmp_path / "missing")
    assert data.find_data(store) == [] and (tmp_path / "d").exists()


def test_the_command(store, tmp_path, capsys):
    source = folder(tmp_path / "d")
    assert main(["import", str(source), "-t", "type:dataset", "--data-dir", str(store.layout.root)]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert "type:dataset" in detail["tags"] and data.show_data(store, detail["knitId"]).knit_id == detail["knitId"]
    assert main(["import", str(tmp_path / "gone"), "--data-dir", str(store.layout.root)]) == 1
    assert "is not a directory" in capsys.readouterr().err
