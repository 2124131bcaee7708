"""Nomination and projection: every combination of matching Data runs exactly once (§6.1, §6.2)."""

import sqlite3
import threading

import pytest
from helpers import apply, push, runs_of, tags
from peewee import IntegrityError

from knitfab.store import data, plans, runs
from knitfab.store.projection import project_all
from knitfab.store.records import Mountpoint


def combos(store, plan_id):
    return {
        frozenset(store.column("SELECT knit_id FROM assign WHERE run_id = ?", run_id))
        for run_id, _ in runs_of(store, plan_id)
    }


def test_two_datasets_times_three_models_make_six_runs(store):
    plan = apply(store, {"/in/dataset": ["type:dataset"], "/in/model": ["type:model"]})
    datasets = [push(store, "type:dataset", f"n:{i}") for i in range(2)]
    models = [push(store, "type:model", f"n:{i}") for i in range(3)]
    project_all(store)
    assert combos(store, plan.plan_id) == {frozenset({d, m}) for d in datasets for m in models}
    assert len(runs_of(store, plan.plan_id)) == 6
    project_all(store)
    assert len(runs_of(store, plan.plan_id)) == 6


def test_data_present_before_the_plan_is_nominated_when_it_is_applied(store):
    knit_id = push(store, "type:dataset", "mode:training")
    plan = apply(store, {"/in/dataset": ["type:dataset"]})
    data_detail = data.show_data(store, knit_id)
    assert [n.plan.plan_id for n in data_detail.nominations] == [plan.plan_id]
    assert project_all(store) == 1
    assert len(runs_of(store, plan.plan_id)) == 1


def test_a_new_run_has_its_outputs_and_log_at_once(store):
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out/model": ["type:model"]}, log={"tags": ["type:log"]})
    push(store, "type:dataset")
    project_all(store)
    ((run_id, status),) = runs_of(store, plan.plan_id)
    assert status == "waiting"
    run = runs.show_run(store, run_id)
    (out,) = run.outputs
    model = data.show_data(store, out.knit_id)
    assert [str(t) for t in model.tags] == [f"knit#id:{out.knit_id}", "knit#transient:processing", "type:model"]
    assert model.upstream.point == Mountpoint("/out/model", tags("type:model"))
    assert run.log.point.tags == tags("type:log")
    log = data.show_data(store, run.log.knit_id)
    assert log.upstream.point == Mountpoint(None, tags("type:log"))
    found = data.find_data(store, tags("type:model", "knit#transient:processing"))
    assert [d.knit_id for d in found] == [out.knit_id]


def test_retagging_does_not_run_again(store):
    plan = apply(store, {"/in": ["type:dataset", "mode:training"]})
    knit_id = push(store, "type:dataset", "mode:training")
    project_all(store)
    data.change_tags(store, knit_id, remove=tags("mode:training"))
    project_all(store)
    assert data.show_data(store, knit_id).nominations == []
    data.change_tags(store, knit_id, add=tags("mode:training"))
    project_all(store)
    assert len(runs_of(store, plan.plan_id)) == 1


def test_a_deleted_run_keeps_its_combination(store):
    plan = apply(store, {"/in": ["type:dataset"]})
    knit_id = push(store, "type:dataset")
    project_all(store)
    ((run_id, _),) = runs_of(store, plan.plan_id)
    runs.delete(store, run_id)
    assert runs_of(store, plan.plan_id) == [(run_id, "invalidated")]
    data.change_tags(store, knit_id, remove=tags("type:dataset"))
    data.change_tags(store, knit_id, add=tags("type:dataset"))
    project_all(store)
    assert runs_of(store, plan.plan_id) == [(run_id, "invalidated")]


def test_the_database_itself_refuses_a_duplicate_combination(store):
    plan = apply(store, {"/in": ["type:dataset"]})
    push(store, "type:dataset")
    project_all(store)
    (combination,) = store.one("SELECT combination FROM run WHERE plan_id = ?", plan.plan_id)
    with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
        with store.write():
            store.execute(
                "INSERT INTO run (run_id, plan_id, status, updated_at, combination) VALUES ('x', ?, 'waiting', 0, ?)",
                plan.plan_id, combination,
            )  # fmt: skip


def test_an_inactive_plan_makes_deactivated_runs(store):
    plan = apply(store, {"/in": ["type:dataset"]}, active=False)
    push(store, "type:dataset")
    project_all(store)
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["deactivated"]


def test_processing_data_is_not_nominated(store):
    apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]})
    consumer = apply(store, {"/in/model": ["type:model"]})
    push(store, "type:dataset")
    project_all(store)
    assert runs_of(store, consumer.plan_id) == []
    assert store.one("SELECT COUNT(*) FROM nomination WHERE input_id IN (SELECT id FROM input WHERE plan_id = ?)",
                     consumer.plan_id) == (0,)  # fmt: skip


def test_an_input_pinned_by_knit_id_takes_only_that_data(store):
    wanted = push(store, "type:dataset")
    push(store, "type:dataset")
    plan = apply(store, {"/in": ["type:dataset", f"knit#id:{wanted}"]})
    project_all(store)
    assert combos(store, plan.plan_id) == {frozenset({wanted})}
    by_id_only = apply(store, {"/in": [f"knit#id:{wanted}"]})
    project_all(store)
    assert combos(store, by_id_only.plan_id) == {frozenset({wanted})}


def test_an_input_pinned_by_timestamp(store):
    wanted = push(store, "type:dataset")
    push(store, "type:dataset")
    stamp = next(str(t) for t in data.show_data(store, wanted).tags if t.key == "knit#timestamp")
    plan = apply(store, {"/in": [stamp]})
    project_all(store)
    (run,) = runs_of(store, plan.plan_id)
    assert store.column("SELECT knit_id FROM assign WHERE run_id = ?", run[0]) == [wanted]


def test_eight_writers_at_once_make_no_duplicate_run(store):
    plan = apply(store, {"/in/a": ["side:a"], "/in/b": ["side:b"]})
    errors, made = [], {"a": [], "b": []}

    def writer(n):
        try:
            side = "ab"[n % 2]
            for _ in range(3):
                knit_id = push(store, f"side:{side}", f"writer:{n}")
                made[side].append(knit_id)
                # re-tag while the others project: remove and add again
                data.change_tags(store, knit_id, remove=tags(f"side:{side}"), add=tags(f"side:{side}"))
                project_all(store)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    project_all(store)
    assert len(made["a"]) == len(made["b"]) == 12
    assert combos(store, plan.plan_id) == {frozenset({a, b}) for a in made["a"] for b in made["b"]}
    assert len(runs_of(store, plan.plan_id)) == 144


def test_plan_listing_reports_no_runs_for_unmatched_tags(store):
    plan = apply(store, {"/in": ["type:dataset", "mode:test"]})
    push(store, "type:dataset")
    project_all(store)
    assert runs_of(store, plan.plan_id) == []
    assert plans.show_plan(store, plan.plan_id).inputs[0].upstreams == []
