"""``/api/plans`` over real HTTP (spec §3 P1–P9)."""

import pytest

pytestmark = pytest.mark.slow

PLAN = {
    "image": "localhost:30503/knitfab-first-train:v1.0",
    "entrypoint": ["python", "-u", "train.py"],
    "args": ["--dataset", "/in/dataset"],
    "inputs": [{"path": "/in/dataset", "tags": ["project:first-knitfab", "type:dataset", "mode:training"]}],
    "outputs": [{"path": "/out/model", "tags": ["project:first-knitfab", {"key": "type", "value": "model"}]}],
    "log": {"tags": ["type:log"]},
    "active": None,
    "resources": {"cpu": "1", "memory": "2Gi"},
}


def test_apply_show_and_find(api):
    plan = api.json("POST", "/api/plans/", json=PLAN)
    assert plan["image"] == "localhost:30503/knitfab-first-train:v1.0" and plan["active"] is True
    assert plan["outputs"][0]["tags"] == ["project:first-knitfab", "type:model"]
    assert plan["resources"] == {"cpu": "1", "memory": "2Gi"}
    assert api.json("GET", f"/api/plans/{plan['planId']}") == plan
    assert [p["planId"] for p in api.json("GET", "/api/plans/?image=localhost:30503/knitfab-first-train")] == [
        plan["planId"]
    ]
    found = api.json("GET", "/api/plans/", params={"in_tag": ["type:dataset", "mode:training"], "active": "true"})
    assert [p["planId"] for p in found] == [plan["planId"]]
    assert api.json("GET", "/api/plans/", params={"out_tag": "type:log", "active": "false"}) == []


def test_apply_refusals(api):
    api.json("POST", "/api/plans/", json=PLAN)
    resp = api.call("POST", "/api/plans/", json={**PLAN, "active": False})
    assert resp.status_code == 409 and resp.json()["message"].startswith("there are equiverent plan")
    cyclic = {**PLAN, "image": "x:1", "outputs": [{"path": "/out", "tags": ["type:dataset", "mode:training",
                                                                             "project:first-knitfab"]}]}  # fmt: skip
    resp = api.call("POST", "/api/plans/", json=cyclic)
    assert resp.status_code == 409 and resp.json()["message"].startswith("plan spec conflics with others")
    resp = api.call("POST", "/api/plans/", json={**PLAN, "inputs": []})
    assert resp.status_code == 400 and "unreachable plan: no inputs" in resp.json()["message"]
    resp = api.call("POST", "/api/plans/", data="image: x", headers={"Content-Type": "application/yaml"})
    assert resp.status_code == 400 and "application/json" in resp.json()["message"]
    resp = api.call("POST", "/api/plans/", json={**PLAN, "annotation": ["a=b"]})
    assert resp.status_code == 400 and "unknown fields: annotation" in resp.json()["message"]


def test_the_mutable_fields(api):
    plan_id = api.json("POST", "/api/plans/", json=PLAN)["planId"]
    assert api.json("DELETE", f"/api/plans/{plan_id}/active")["active"] is False
    assert api.json("PUT", f"/api/plans/{plan_id}/active/")["active"] is True
    changed = api.json("PUT", f"/api/plans/{plan_id}/resources", json={"set": {"cpu": 2.5}, "unset": ["memory"]})
    assert changed["resources"] == {"cpu": "2500m"}
    changed = api.json("PUT", f"/api/plans/{plan_id}/annotations", json={"add": ["owner=me", "a=b"]})
    assert changed["annotations"] == ["a=b", "owner=me"]
    changed = api.json("PUT", f"/api/plans/{plan_id}/serviceaccount", json={"service_account": "trainer"})
    assert changed["service_account"] == "trainer"
    assert "service_account" not in api.json("DELETE", f"/api/plans/{plan_id}/serviceaccount")


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "/api/plans/?active=maybe", None, 400),
        ("GET", "/api/plans/?in_tag=nocolon", None, 400),
        ("GET", "/api/plans/no-such-plan", None, 404),
        ("PUT", "/api/plans/no-such-plan/active", None, 404),
        ("DELETE", "/api/plans/no-such-plan/active", None, 404),
        ("PUT", "/api/plans/no-such-plan/resources", {"set": {"cpu": "1"}}, 404),
        ("PUT", "/api/plans/no-such-plan/annotations", {"add": ["a=b"]}, 404),
        ("PUT", "/api/plans/no-such-plan/serviceaccount", {"service_account": "x"}, 404),
        ("DELETE", "/api/plans/no-such-plan/serviceaccount", None, 404),
    ],
)
def test_plan_errors(api, method, path, body, status):
    resp = api.call(method, path, json=body)
    assert resp.status_code == status and resp.json()["message"]


def test_bad_changes_to_an_existing_plan(api):
    plan_id = api.json("POST", "/api/plans/", json=PLAN)["planId"]
    for path, body in [
        ("resources", {"set": {"cpu": "lots"}}),
        ("resources", {"set": ["cpu"]}),
        ("annotations", {"add": ["no-equals-sign"]}),
        ("annotations", {"add": [1]}),
        ("serviceaccount", {"service_account": "x" * 64}),
        ("serviceaccount", {"other": "x"}),
    ]:
        resp = api.call("PUT", f"/api/plans/{plan_id}/{path}", json=body)
        assert resp.status_code == 400, (path, body, resp.text)
