"""Data: finding, tagging and uploading (§3 D1–D4, §6.6)."""

import pytest
from fake_runner import FakeRunner
from helpers import apply, push, runs_of, tags

from knitfab.api import render
from knitfab.engine import Engine
from knitfab.errors import BadRequest, NotFound
from knitfab.store import data, imports, runs
from knitfab.tags import Tag
from knitfab.times import parse_rfc3339


def ids(found):
    return [d.knit_id for d in found]


def stamp_of(detail):
    return next(t.value for t in detail.tags if t.key == "knit#timestamp")


def test_a_pushed_data_in_knitfabs_shape(store):
    knit_id = push(store, "type:dataset", "format:mnist")
    found = data.show_data(store, knit_id)
    detail = render.data(found)
    assert list(detail) == ["knitId", "tags", "upstream", "downstreams", "nomination"]
    stamp = stamp_of(found)
    assert detail["tags"] == ["format:mnist", f"knit#id:{knit_id}", f"knit#timestamp:{stamp}", "type:dataset"]
    upstream = detail["upstream"]
    assert upstream["mountpoint"] == {"path": "/upload", "tags": []}
    assert upstream["run"]["status"] == "done" and upstream["run"]["plan"]["name"] == "knit#uploaded"
    assert detail["downstreams"] == [] and detail["nomination"] == []


def test_a_done_upload_carries_no_exit_as_in_knitfab(store):
    knit_id = push(store)
    run = runs.show_run(store, data.show_data(store, knit_id).upstream.run.run_id)
    assert run.status == "done" and "exit" not in render.run(run)
    assert "exit" not in render.data(data.show_data(store, knit_id))["upstream"]["run"]


def test_find_by_tags_means_all_of_them(store):
    a = push(store, "type:dataset", "mode:training")
    b = push(store, "type:dataset", "mode:test")
    assert ids(data.find_data(store, tags("type:dataset"))) == [a, b]
    assert ids(data.find_data(store, tags("type:dataset", "mode:test"))) == [b]
    assert data.find_data(store, tags("type:dataset", "mode:none")) == []
    assert ids(data.find_data(store)) == [a, b]


def test_find_by_system_tags(store):
    a = push(store, "type:dataset")
    b = push(store, "type:dataset")
    assert ids(data.find_data(store, tags(f"knit#id:{b}"))) == [b]
    assert data.find_data(store, tags(f"knit#id:{a}", f"knit#id:{b}")) == []
    stamp = stamp_of(data.show_data(store, a))
    assert ids(data.find_data(store, [Tag("knit#timestamp", stamp)])) == [a]
    assert data.find_data(store, tags("knit#transient:processing")) == []
    assert data.find_data(store, tags("knit#other:x")) == []
    assert data.find_data(store, tags("knit#transient:processing", "knit#transient:failed")) == []


def test_processing_data_come_last_and_can_be_found_as_such(store):
    apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]})
    first = push(store, "type:dataset")
    Engine(store, FakeRunner(store.layout)).project()
    later = push(store, "type:other")
    found = ids(data.find_data(store))
    assert found[:2] == [first, later]
    (model,) = ids(data.find_data(store, tags("knit#transient:processing")))
    assert found[2] == model


def test_find_by_time_window(store):
    a = push(store, "n:a")
    t = parse_rfc3339(stamp_of(data.show_data(store, a)))
    assert a in ids(data.find_data(store, since=t))
    assert a not in ids(data.find_data(store, since=t + 1000))
    assert ids(data.find_data(store, since=t, until=t + 1000)) == [a]
    assert data.find_data(store, since=t - 10_000_000, until=t) == []


def test_tag_changes_remove_then_remove_key_then_add(store):
    knit_id = push(store, "a:1", "b:1", "b:2")
    detail = data.change_tags(store, knit_id, add=tags("a:1", "b:3"), remove=tags("a:1"), remove_key=["b"])
    assert [str(t) for t in detail.tags if not t.is_system] == ["a:1", "b:3"]
    detail = data.change_tags(store, knit_id, remove=tags("zzz:none"))  # removing a missing tag: no-op
    assert [str(t) for t in detail.tags if not t.is_system] == ["a:1", "b:3"]


def test_tag_changes_refuse_system_tags_and_unknown_data(store):
    knit_id = push(store)
    for kwargs in (
        {"add": tags("knit#id:x")},
        {"remove": tags("knit#transient:failed")},
        {"remove_key": ["knit#timestamp"]},
    ):
        with pytest.raises(BadRequest) as e:
            data.change_tags(store, knit_id, **kwargs)
        assert e.value.status == 400
    with pytest.raises(NotFound) as e:
        data.change_tags(store, "no-such-data", add=tags("a:b"))
    assert e.value.reason == "correspontind data is missing"


def test_a_failed_upload_leaves_a_failed_run_and_no_data(store):
    run_id, knit_id = data.begin_upload(store)
    staging = store.layout.staging(knit_id)
    staging.mkdir(parents=True)
    (staging / "half").write_text("written")
    assert data.find_data(store, tags(f"knit#id:{knit_id}"))[0].tags[-1] == Tag("knit#transient", "processing")
    data.end_upload(store, run_id, ok=False, message="client went away")
    run = runs.show_run(store, run_id)
    assert run.status == "failed" and (run.exit_code, run.message) == (1, "client went away")
    assert run.outputs == []
    with pytest.raises(NotFound):
        data.show_data(store, knit_id)
    Engine(store, FakeRunner(store.layout)).collect_garbage()
    assert not staging.exists() and not store.layout.data(knit_id).exists()


def test_downstreams_and_nominations_of_a_data(store):
    plan = apply(store, {"/in": ["type:dataset"]}, args=["hang"])
    other = apply(store, {"/in/x": ["type:dataset"]}, active=False, image="other:v1")
    knit_id = push(store, "type:dataset")
    Engine(store, FakeRunner(store.layout)).run_until_idle()
    detail = data.show_data(store, knit_id)
    assert {n.plan.plan_id for n in detail.nominations} == {plan.plan_id, other.plan_id}
    assert {n.point.path for n in detail.nominations} == {"/in", "/in/x"}
    assert {d.run.plan.plan_id for d in detail.downstreams} == {plan.plan_id, other.plan_id}
    assert {d.point.path for d in detail.downstreams} == {"/in", "/in/x"}


def kept_and_joined(store) -> tuple[dict, dict]:
    """Each Data's ``tag_ids`` as kept, and as its ``data_tag`` rows say (sets of ids)."""
    kept = {k: set(map(int, filter(None, t.split(",")))) for k, t in store.all("SELECT knit_id, tag_ids FROM data")}
    joined = {k: set() for k in kept}
    for knit_id, tag_id in store.all("SELECT knit_id, tag_id FROM data_tag"):
        joined[knit_id].add(tag_id)
    return kept, joined


def test_the_kept_tag_ids_follow_every_change_of_a_datas_tags(store, tmp_path):
    """DataDetails read a Data's tags from ``data.tag_ids``: every writer of data_tag keeps it."""
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["made:by-run", "kind:model"]}, args=["ok"])
    knit_id = push(store, "type:dataset", "a:1", "b:2")
    Engine(store, FakeRunner(store.layout)).run_until_idle()  # a run's outputs get its plan's tags
    data.change_tags(store, knit_id, add=tags("c:3"), remove=tags("a:1"), remove_key=["b"])
    (tmp_path / "in").mkdir()
    imports.import_directory(store, tmp_path / "in", ["imported:yes"], copy=True)
    kept, joined = kept_and_joined(store)
    assert kept == joined and len(kept) == 3  # the upload, the run's output, the import
    made = data.find_data(store, tags("made:by-run"))
    assert [t for t in made[0].tags if not t.is_system] == tags("kind:model", "made:by-run")
    assert runs_of(store, plan.plan_id)
    assert [str(t) for t in data.show_data(store, knit_id).tags if not t.is_system] == ["c:3", "type:dataset"]
