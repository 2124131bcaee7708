"""Run lifecycle rules: the transition table, user operations and their protections (§6.3–§6.8)."""

import pytest
from fake_runner import FakeRunner
from helpers import apply, push, runs_of, tags

from knitfab.api import render
from knitfab.engine import Engine
from knitfab.errors import Conflict, InvalidTransition, NotFound
from knitfab.status import ALLOWED, RunStatus, check_transition, parse_status_list
from knitfab.store import data, runs
from knitfab.store.jobs import load_job
from knitfab.tags import Tag

S = RunStatus


@pytest.fixture
def engine(store):
    return Engine(store, FakeRunner(store.layout))


def one_run(store, plan):
    ((run_id, _),) = runs_of(store, plan.plan_id)
    return run_id


def status(store, run_id):
    return runs.show_run(store, run_id).status


@pytest.mark.parametrize("current", list(RunStatus))
@pytest.mark.parametrize("new", list(RunStatus))
def test_the_transition_table_is_the_only_judge(current, new):
    if current == new and not current.finished:
        assert check_transition(current, new) is False
    elif new in ALLOWED[current]:
        assert check_transition(current, new) is True
    else:
        with pytest.raises(InvalidTransition):
            check_transition(current, new)


def test_knitfabs_transitions():
    assert ALLOWED[S.READY] == {S.STARTING, S.RUNNING, S.COMPLETING, S.ABORTING}
    assert ALLOWED[S.DONE] == ALLOWED[S.FAILED] == ALLOWED[S.INVALIDATED] == set()


def test_status_filters_refuse_invalidated():
    assert parse_status_list("done, failed") == [S.DONE, S.FAILED]
    with pytest.raises(Exception, match='"status" should be one of'):
        parse_status_list("invalidated")


def test_tearoff_makes_a_done_run_with_usable_outputs(store, engine):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]})
    push(store, "type:dataset")
    engine.run_until_idle()
    run_id = one_run(store, plan)
    assert status(store, run_id) == "running"
    shown = runs.tearoff(store, run_id)
    assert shown.status == "completing" and (shown.exit_code, shown.message) == (0, "stopped by user")
    engine.run_until_idle()
    run = runs.show_run(store, run_id)
    assert run.status == "done" and (run.exit_code, run.message) == (0, "stopped by user")
    assert engine.runner.stopped == [run_id]
    model = data.show_data(store, run.outputs[0].knit_id)
    assert not any(t.key == "knit#transient" for t in model.tags)


def test_abort_makes_a_failed_run(store, engine):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]})
    push(store, "type:dataset")
    engine.run_until_idle()
    run_id = one_run(store, plan)
    aborted = runs.abort(store, run_id)
    assert (aborted.exit_code, aborted.message) == (253, "aborted by user")
    engine.run_until_idle()
    run = runs.show_run(store, run_id)
    assert run.status == "failed"
    model = data.show_data(store, run.outputs[0].knit_id)
    assert Tag("knit#transient", "failed") in model.tags
    assert any(t.key == "knit#timestamp" for t in model.tags)


def test_abort_works_before_start_but_tearoff_does_not(store):
    plan = apply(store, {"/in": ["type:dataset"]}, active=False)
    push(store, "type:dataset")
    Engine(store, FakeRunner(store.layout)).project()
    run_id = one_run(store, plan)
    with pytest.raises(InvalidTransition) as e:
        runs.tearoff(store, run_id)
    assert (e.value.status, e.value.reason) == (409, "prohibited operation")
    assert runs.abort(store, run_id).status == "aborting"
    assert runs.abort(store, run_id).status == "aborting"  # the same status again: a no-op


def test_user_operations_on_unknown_runs(store):
    for op in (runs.abort, runs.tearoff, runs.retry, runs.delete, runs.show_run):
        with pytest.raises(NotFound):
            op(store, "no-such-run")


def test_retry_gives_fresh_outputs_and_runs_again(store, engine):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["fail", "3"])
    push(store, "type:dataset")
    engine.run_until_idle()
    run_id = one_run(store, plan)
    failed = runs.show_run(store, run_id)
    assert failed.status == "failed" and failed.exit_code == 3
    old_output = failed.outputs[0].knit_id
    runs.retry(store, run_id)
    retried = runs.show_run(store, run_id)
    assert retried.status == "waiting" and retried.exit_code is None
    assert retried.outputs[0].knit_id != old_output
    with pytest.raises(NotFound):
        data.show_data(store, old_output)
    assert store.column("SELECT knit_id FROM garbage") == [old_output]
    engine.run_until_idle()
    assert not store.layout.data(old_output).exists()
    assert status(store, run_id) == "failed"


def test_retry_and_delete_protections(store, engine):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    consumer = apply(store, {"/in": ["type:model"]})
    push(store, "type:dataset")
    engine.run_until_idle()
    run_id = one_run(store, plan)
    running = one_run(store, consumer)
    assert status(store, running) == "running"
    for op in (runs.retry, runs.delete):
        with pytest.raises(Conflict) as e:
            op(store, run_id)
        assert e.value.reason == "output of the run is in use"
        assert e.value.advice == "Delete all downstreams of the run first"
        with pytest.raises(Conflict) as e:
            op(store, running)
        assert e.value.reason == "the run have not finished yet"
    (upload,) = runs.show_run(store, run_id).inputs
    upload_run = data.show_data(store, upload.knit_id).upstream.run.run_id
    with pytest.raises(InvalidTransition, match="Root run cannot be retried"):
        runs.retry(store, upload_run)


def test_deleting_downstream_first_then_upstream(store, engine):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    consumer = apply(store, {"/in": ["type:model"]}, args=["succeed"])
    dataset = push(store, "type:dataset")
    engine.run_until_idle()
    first, second = one_run(store, plan), one_run(store, consumer)
    runs.delete(store, second)
    assert status(store, second) == "invalidated"
    assert runs.find_runs(store, statuses=[S.DONE])[-1].run_id == first
    with pytest.raises(NotFound):
        runs.delete(store, second)
    runs.retry(store, first)  # its output is used only by an invalidated run: allowed, and that run goes
    assert store.one("SELECT 1 FROM run WHERE run_id = ?", second) is None
    engine.run_until_idle()
    assert len(runs_of(store, consumer.plan_id)) == 1  # the new model made a new combination
    upload_run = data.show_data(store, dataset).upstream.run.run_id
    with pytest.raises(Conflict):
        runs.delete(store, upload_run)


def test_deleting_an_upload_removes_it_completely(store):
    knit_id = push(store, "type:dataset")
    upload_run = data.show_data(store, knit_id).upstream.run.run_id
    runs.delete(store, upload_run)
    with pytest.raises(NotFound):
        runs.show_run(store, upload_run)
    assert data.find_data(store, tags("type:dataset")) == []


def test_a_waiting_run_can_be_deleted_and_never_comes_back(store):
    plan = apply(store, {"/in": ["type:dataset"]}, active=False)
    knit_id = push(store, "type:dataset")
    Engine(store, FakeRunner(store.layout)).project()
    run_id = one_run(store, plan)
    runs.delete(store, run_id)
    data.change_tags(store, knit_id, remove=tags("type:dataset"), add=tags("type:dataset"))
    Engine(store, FakeRunner(store.layout)).run_until_idle()
    assert runs_of(store, plan.plan_id) == [(run_id, "invalidated")]


def test_find_runs_filters_and_order(store, engine):
    a = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    b = apply(store, {"/in": ["type:dataset"]}, image="other:v1")
    d1 = push(store, "type:dataset")
    engine.run_until_idle(max_ticks=50)
    all_runs = runs.find_runs(store)
    assert [(r.updated_at, r.run_id) for r in all_runs] == sorted((r.updated_at, r.run_id) for r in all_runs)
    assert {r.plan.plan_id for r in runs.find_runs(store, plan_ids=[a.plan_id])} == {a.plan_id}
    using = runs.find_runs(store, knit_ids_in=[d1])
    assert {r.plan.plan_id for r in using} == {a.plan_id, b.plan_id}
    model = runs.find_runs(store, plan_ids=[a.plan_id])[0].outputs[0].knit_id
    assert [r.plan.plan_id for r in runs.find_runs(store, knit_ids_out=[model])] == [a.plan_id]
    assert [r.plan.plan_id for r in runs.find_runs(store, statuses=[S.RUNNING])] == [b.plan_id]
    assert runs.find_runs(store, plan_ids=[a.plan_id], statuses=[S.RUNNING]) == []
    last = all_runs[-1]
    t = last.updated_at
    assert runs.find_runs(store, since=t + 1000) == []
    assert last in runs.find_runs(store, since=t, until=t + 1000)


def test_run_detail_shapes(store, engine):
    plan = apply(
        store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, log={"tags": ["type:log"]}, args=["succeed"]
    )
    knit_id = push(store, "type:dataset")
    engine.run_until_idle()
    run = render.run(runs.show_run(store, one_run(store, plan)))
    assert list(run) == ["runId", "status", "updatedAt", "exit", "plan", "inputs", "outputs", "log"]
    assert run["inputs"] == [{"path": "/in", "tags": ["type:dataset"], "knitId": knit_id}]
    assert run["plan"] == {
        "planId": plan.plan_id,
        "image": "example.com/train:v1",
        "entrypoint": ["fake"],
        "args": ["succeed"],
    }
    upload = render.run(runs.show_run(store, data.show_data(store, knit_id).upstream.run.run_id))
    assert upload["inputs"] == [] and upload["log"] is None
    assert upload["outputs"] == [{"path": "/upload", "tags": [], "knitId": knit_id}]
    assert upload["plan"]["name"] == "knit#uploaded"


def test_load_job_gives_the_runner_what_it_needs(store, engine):
    plan = apply(store, {"/in/b": ["type:dataset"]}, {"/out/m": ["type:model"]}, log={"tags": ["type:log"]},
                 resources={"cpu": "500m"}, on_node={"must": ["gpu=yes"]})  # fmt: skip
    knit_id = push(store, "type:dataset")
    engine.project()
    job = load_job(store, one_run(store, plan))
    assert job.image == "example.com/train:v1"
    assert [(m.path, m.knit_id) for m in job.inputs] == [("/in/b", knit_id)]
    assert [m.path for m in job.outputs] == ["/out/m"] and job.log
    assert job.resources == {"cpu": "500m", "memory": "1Gi"}
    assert job.on_node == [("must", "gpu", "yes")]


def test_finishing_a_run_reads_its_status_once(store, engine):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]})
    push(store, "type:dataset")
    engine.run_until_idle()
    run_id = one_run(store, plan)
    runs.tearoff(store, run_id)  # completing
    statements = []
    conn = store.db.connection()
    conn.set_trace_callback(statements.append)
    try:
        with store.write():
            assert runs.finish(store, run_id) == S.DONE
    finally:
        conn.set_trace_callback(None)
    assert sum("SELECT status FROM run" in sql for sql in statements) == 1
    assert status(store, run_id) == "done"
