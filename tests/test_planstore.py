import pytest
from helpers import apply, push, runs_of, tags

from knitfab.api import render
from knitfab.errors import Conflict, NotFound
from knitfab.store import plans
from knitfab.store.projection import project_all
from knitfab.store.records import Mountpoint, PlanOutput


def test_an_applied_plan_shows_in_knitfabs_shape(store):
    applied = apply(
        store,
        {"/in/dataset": ["type:dataset", "mode:training"]},
        {"/out/model": ["type:model"]},
        log={"tags": ["type:log"]},
        annotations=["owner=me", "a=b"],
        on_node={"may": ["gpu=yes"]},
        service_account="trainer",
    )
    plan = render.plan(applied)
    assert list(plan) == [
        "planId", "image", "entrypoint", "args", "annotations", "inputs", "outputs", "log",
        "active", "on_node", "resources", "service_account",
    ]  # fmt: skip
    assert plan["image"] == "example.com/train:v1"
    assert plan["annotations"] == ["a=b", "owner=me"]
    assert plan["inputs"] == [{"path": "/in/dataset", "tags": ["mode:training", "type:dataset"], "upstreams": []}]
    assert plan["outputs"] == [{"path": "/out/model", "tags": ["type:model"], "downstreams": []}]
    assert plan["log"] == {"tags": ["type:log"], "downstreams": []}
    assert plan["resources"] == {"cpu": "1", "memory": "1Gi"}
    assert plan["on_node"] == {"may": ["gpu=yes"]}
    assert render.plan(plans.show_plan(store, plan["planId"])) == plan


def test_an_equivalent_plan_is_refused(store):
    apply(store, {"/in": ["a:b"]})
    with pytest.raises(Conflict) as e:
        apply(store, {"/in": ["a:b"]}, active=False, resources={"cpu": "2"})
    assert e.value.reason == "there are equiverent plan"
    assert e.value.status == 409


def test_a_plan_feeding_itself_is_a_cycle(store):
    with pytest.raises(Conflict) as e:
        apply(store, {"/in": ["type:x"]}, {"/out": ["type:x", "more:1"]})
    assert e.value.reason == "plan spec conflics with others"
    assert store.one("SELECT COUNT(*) FROM plan WHERE name IS NULL") == (0,)


def test_a_cycle_through_other_plans_is_refused_and_nothing_is_kept(store):
    apply(store, {"/in": ["stage:a"]}, {"/out": ["stage:b"]})
    apply(store, {"/in": ["stage:b"]}, {"/out": ["stage:c"]})
    with pytest.raises(Conflict):
        apply(store, {"/in": ["stage:c"]}, log={"tags": ["stage:a"]})
    assert store.one("SELECT COUNT(*) FROM plan WHERE name IS NULL") == (2,)


def test_pinned_inputs_do_not_make_cycles(store):
    apply(store, {"/in": ["type:x", "knit#id:0b6cbb2e-0000-4000-8000-000000000000"]}, {"/out": ["type:x"]})


def test_upstreams_and_downstreams_follow_tags(store):
    train = apply(
        store,
        {"/in/dataset": ["type:dataset"]},
        {"/out/model": ["type:model", "project:p"]},
        log={"tags": ["type:log"]},
    )
    validate = apply(store, {"/in/model": ["type:model"], "/in/dataset": ["type:test"]})
    logs = apply(store, {"/in/log": ["type:log"]}, args=["succeed"])
    train = plans.show_plan(store, train.plan_id)
    validate = plans.show_plan(store, validate.plan_id)
    (model_in,) = [i for i in validate.inputs if i.point.path == "/in/model"]
    assert [u.plan.plan_id for u in model_in.upstreams] == [train.plan_id]
    assert model_in.upstreams[0].point == Mountpoint("/out/model", tags("project:p", "type:model"))
    assert [d.plan.plan_id for d in train.outputs[0].downstreams] == [validate.plan_id]
    assert train.log.downstreams[0].plan.plan_id == logs.plan_id
    assert train.log.downstreams[0].point.path == "/in/log"
    (log_in,) = plans.show_plan(store, logs.plan_id).inputs
    assert log_in.upstreams[0].point == Mountpoint(None, tags("type:log"))


def test_find_plans_by_every_filter(store):
    a = apply(store, {"/in/a": ["type:dataset", "mode:train"]}, {"/out/m": ["type:model"]}, image="repo/a:v1")
    b = apply(
        store,
        {"/in/b": ["type:dataset"], "/in/c": ["mode:train"]},
        log={"tags": ["type:log"]},
        image="host:5000/b:2.0",
        active=False,
    )

    def ids(**filters):
        return {p.plan_id for p in plans.find_plans(store, **filters)}

    assert ids(active=True) >= {a.plan_id} and b.plan_id not in ids(active=True)
    assert ids(active=False) == {b.plan_id}
    assert ids(image="repo/a") == {a.plan_id}
    assert ids(image="repo/a:v2") == set()
    assert ids(image="host:5000/b:2.0") == {b.plan_id}
    # in-tags must all be on one input
    assert ids(in_tags=tags("type:dataset", "mode:train")) == {a.plan_id}
    assert ids(in_tags=tags("type:dataset")) == {a.plan_id, b.plan_id}
    # out-tags may be on an output or the log
    assert ids(out_tags=tags("type:log")) == {b.plan_id}
    assert ids(out_tags=tags("type:model")) == {a.plan_id}
    assert ids(out_tags=tags("knit#id:x")) == set()
    assert ids(in_tags=tags("no:such")) == set()
    found = plans.find_plans(store)
    assert [p.plan_id for p in found] == sorted(p.plan_id for p in found)


def test_find_plans_by_pinned_knit_id(store):
    pinned = apply(store, {"/in": ["type:x", "knit#id:abc"]})
    apply(store, {"/in": ["type:x"]})
    found = plans.find_plans(store, in_tags=tags("knit#id:abc"))
    assert [p.plan_id for p in found] == [pinned.plan_id]
    assert plans.find_plans(store, in_tags=tags("knit#id:abc", "knit#id:def")) == []


def test_deactivating_a_plan_holds_its_waiting_runs(store):
    plan = apply(store, {"/in": ["type:x"]})
    push(store, "type:x")
    project_all(store)
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["waiting"]
    assert plans.set_active(store, plan.plan_id, False).active is False
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["deactivated"]
    plans.set_active(store, plan.plan_id, True)
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["waiting"]


def test_resources_set_then_unset(store):
    plan = apply(store, {"/in": ["type:x"]})
    changed = plans.change_resources(store, plan.plan_id, {"cpu": "2.5", "nvidia.com/gpu": 1}, ["memory"])
    assert changed.resources == {"cpu": "2500m", "nvidia.com/gpu": "1"}
    changed = plans.change_resources(store, plan.plan_id, {"memory": "2Gi"}, ["memory"])
    assert "memory" not in changed.resources  # unset wins, as in Knitfab


def test_annotations_remove_key_remove_then_add(store):
    plan = apply(store, {"/in": ["type:x"]}, annotations=["a=1", "a=2", "b=1"])
    changed = plans.change_annotations(store, plan.plan_id, add=["a=3", "b=1"], remove=["b=1"], remove_key=["a"])
    assert changed.annotations == [("a", "3"), ("b", "1")]


def test_service_account_set_and_unset(store):
    plan = apply(store, {"/in": ["type:x"]})
    assert plans.set_service_account(store, plan.plan_id, "sa").service_account == "sa"
    assert plans.set_service_account(store, plan.plan_id, None).service_account is None


def test_unknown_and_pseudo_plans(store):
    with pytest.raises(NotFound):
        plans.show_plan(store, "nope")
    with pytest.raises(NotFound):
        plans.set_active(store, "nope", True)
    (pseudo,) = store.one("SELECT plan_id FROM plan WHERE name = 'knit#uploaded'")
    shown = plans.show_plan(store, pseudo)
    assert shown.name == "knit#uploaded" and shown.image is None
    assert shown.outputs == [PlanOutput(Mountpoint("/upload", []), downstreams=[])]
    with pytest.raises(Conflict):
        plans.set_active(store, pseudo, False)
