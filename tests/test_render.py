"""Knitfab's JSON from the store's records (api/render.py): Go's key order, ``omitempty``'s
absent keys, and one rendering of what an answer shares."""

from __future__ import annotations

import json

from knitfab.api import render
from knitfab.status import RunStatus
from knitfab.store.records import (
    Assignment,
    DataDetail,
    Mountpoint,
    PlanDetail,
    PlanOutput,
    PlanSummary,
    RunDetail,
    RunPoint,
    RunSummary,
    fields_of,
)
from knitfab.tags import Tag

UPLOADED = PlanSummary("p-up", None, None, None, "knit#uploaded", [])
TRAIN = PlanSummary("p-train", "repo/train:v1", ["python"], ["main.py"], None, [("a", "1"), ("b", "2")])
OUT = Mountpoint("/out", [Tag("type", "model")])
LOG = Mountpoint(None, [Tag("type", "log")])


def summary(run_id="r1", status=RunStatus.DONE, code=0, message="", plan=TRAIN) -> RunSummary:
    return RunSummary(run_id, status, 1_700_000_000_123_000, code, message, plan)


def text(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_a_plan_summary_leaves_out_what_it_lacks():
    assert render.plan_summary(UPLOADED) == {"planId": "p-up", "name": "knit#uploaded"}
    assert text(render.plan_summary(TRAIN)) == (
        '{"planId":"p-train","image":"repo/train:v1","entrypoint":["python"],"args":["main.py"],'
        '"annotations":["a=1","b=2"]}'
    )


def test_a_run_summary_gives_the_exit_once_ended_and_else_why_it_waits():
    renderer = render.Renderer()
    assert renderer.run_summary(summary())["exit"] == {"code": 0, "message": ""}
    waiting = renderer.run_summary(summary("r2", RunStatus.WAITING, None, "no room for cpu=4"))
    assert "exit" not in waiting and waiting["message"] == "no room for cpu=4"
    assert list(renderer.run_summary(summary("r3", RunStatus.READY, None))) == ["runId", "status", "updatedAt", "plan"]
    assert renderer.run_summary(summary())["updatedAt"] == "2023-11-14T22:13:20.123+00:00"


def test_a_run_detail_has_a_null_log_and_paths_only_where_there_are_paths():
    run = RunDetail(*fields_of(summary()), [], [Assignment(OUT, "k-out")], Assignment(LOG, "k-log"))
    shown = render.run(run)
    assert list(shown) == ["runId", "status", "updatedAt", "exit", "plan", "inputs", "outputs", "log"]
    assert shown["outputs"] == [{"path": "/out", "tags": ["type:model"], "knitId": "k-out"}]
    assert shown["log"] == {"tags": ["type:log"], "knitId": "k-log"}
    assert render.run(RunDetail(*fields_of(summary()), [], [], None))["log"] is None


def test_a_plan_detail_leaves_out_an_absent_log_and_empty_settings():
    bare = PlanDetail(*fields_of(TRAIN), [], [PlanOutput(OUT, [])], None, True, [], {}, None)
    assert list(render.plan(bare)) == [*render.plan_summary(TRAIN), "inputs", "outputs", "active"]
    rules = [("may", "x", "1"), ("must", "gpu", "yes"), ("prefer", "y", "2")]
    full = PlanDetail(*fields_of(TRAIN), [], [], PlanOutput(LOG, []), False, rules, {"cpu": "1"}, "sa")
    shown = render.plan(full)
    assert list(shown)[-5:] == ["log", "active", "on_node", "resources", "service_account"]
    assert list(shown["on_node"]) == ["may", "prefer", "must"]  # Knitfab's order, not the alphabet's
    assert shown["log"] == {"tags": ["type:log"], "downstreams": []}


def test_a_data_detail_names_its_upstream_point_log_or_mountpoint():
    made = DataDetail("k1", [Tag("knit#id", "k1"), Tag("type", "model")], RunPoint(OUT, summary()), [], [])
    logged = DataDetail("k2", [Tag("knit#id", "k2")], RunPoint(LOG, summary()), [], [])
    assert list(render.data(made)) == ["knitId", "tags", "upstream", "downstreams", "nomination"]
    assert list(render.data(made)["upstream"]) == ["mountpoint", "run"]
    assert list(render.data(logged)["upstream"]) == ["log", "run"]
    assert render.data(made)["tags"] == ["knit#id:k1", "type:model"]


def test_what_an_answer_shares_is_rendered_once():
    one_run = summary()
    found = [DataDetail(f"k{i}", [], RunPoint(OUT, one_run), [], []) for i in range(3)]
    shown = render.data_list(found)
    assert shown[0]["upstream"]["run"] is shown[2]["upstream"]["run"]
    assert shown[0]["upstream"]["mountpoint"] is shown[1]["upstream"]["mountpoint"]
    assert text(shown[0]) == text(render.data(found[0]))  # shared or not, the same bytes
