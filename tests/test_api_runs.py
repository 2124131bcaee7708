"""``/api/runs`` over real HTTP (spec §3 R1–R7, §4.3)."""

import shutil
import time

import pytest
import requests
from helpers import wait_for

from knitfab.runners.local import LocalRunner
from knitfab.server import Config, KnitfabServer
from knitfab.store.jobs import load_job
from knitfab.store.layout import Layout

pytestmark = pytest.mark.slow


def plan(api, **extra):
    doc = {
        "image": "example.com/train:v1",
        "entrypoint": ["fake"],
        "args": ["hang"],
        "inputs": [{"path": "/in/dataset", "tags": ["type:dataset"]}],
        "outputs": [{"path": "/out/model", "tags": ["type:model"]}],
        "log": {"tags": ["type:log"]},
        **extra,
    }
    return api.json("POST", "/api/plans/", json=doc)


def the_run(api, plan_id, status=None):
    def found():
        runs = api.json("GET", f"/api/runs/?plan={plan_id}")
        return runs and (status is None or runs[0]["status"] == status) and runs[0]

    return wait_for(found)


def test_a_run_from_push_to_done(server, api):
    p = plan(api)
    dataset = api.push({"x": "1"}, "type:dataset")
    run = the_run(api, p["planId"], "running")
    assert run["inputs"] == [{"path": "/in/dataset", "tags": ["type:dataset"], "knitId": dataset["knitId"]}]
    server.runner.finish(load_job(server.store, run["runId"]), 0)
    run = the_run(api, p["planId"], "done")
    assert run["exit"] == {"code": 0, "message": ""}
    log = api.call("GET", f"/api/runs/{run['runId']}/log")
    assert log.headers["Content-Type"] == "application/octet-stream"
    assert log.text == f"run {run['runId']} exits 0\n"
    found = api.json("GET", "/api/runs/", params={"knitIdInput": dataset["knitId"], "status": "done,failed"})
    assert [r["runId"] for r in found] == [run["runId"]]
    model = run["outputs"][0]["knitId"]
    assert [r["runId"] for r in api.json("GET", f"/api/runs/?knitIdOutput={model}")] == [run["runId"]]


def test_stop_retry_and_delete(server, api):
    p = plan(api)
    api.push({"x": "1"}, "type:dataset")
    run = the_run(api, p["planId"], "running")
    run_id = run["runId"]
    stopped = api.json("PUT", f"/api/runs/{run_id}/tearoff")
    assert stopped["status"] == "completing" and stopped["exit"]["message"] == "stopped by user"
    the_run(api, p["planId"], "done")
    resp = api.call("PUT", f"/api/runs/{run_id}/abort")
    assert resp.status_code == 409 and resp.json()["message"].startswith("prohibited operation")
    resp = api.call("PUT", f"/api/runs/{run_id}/retry")
    assert resp.status_code == 200 and resp.content == b""
    run = the_run(api, p["planId"], "running")
    assert api.json("PUT", f"/api/runs/{run_id}/abort")["exit"] == {"code": 253, "message": "aborted by user"}
    the_run(api, p["planId"], "failed")
    resp = api.call("DELETE", f"/api/runs/{run_id}")
    assert resp.status_code == 204 and resp.content == b""
    assert api.json("GET", f"/api/runs/{run_id}")["status"] == "invalidated"
    assert api.call("GET", f"/api/runs/{run_id}/log").status_code == 404
    assert api.call("DELETE", f"/api/runs/{run_id}").status_code == 404


def test_logs_before_start_and_without_log(api):
    p = plan(api, active=False)
    api.push({"x": "1"}, "type:dataset")
    run = the_run(api, p["planId"], "deactivated")
    resp = api.call("GET", f"/api/runs/{run['runId']}/log")
    assert resp.status_code == 503 and "please retry later." in resp.json()["message"]
    silent = plan(api, log=None, image="silent:v1")
    run = the_run(api, silent["planId"], "running")
    assert api.call("GET", f"/api/runs/{run['runId']}/log").status_code == 404


@pytest.mark.parametrize(
    "query, words",
    [
        ("status=invalidated", '"status" should be one of'),
        ("status=bogus", '"status" should be one of'),
        ("since=2024-01-01", "RFC3339"),
        ("since=2024-01-01T00:00:00Z&duration=forever", "duration"),
    ],
)
def test_bad_run_queries(api, query, words):
    resp = api.call("GET", f"/api/runs/?{query}")
    assert resp.status_code == 400 and words in resp.json()["message"]


@pytest.mark.parametrize("method, action", [("PUT", "abort"), ("PUT", "tearoff"), ("PUT", "retry"), ("GET", "log")])
def test_unknown_runs_are_404(api, method, action):
    assert api.call(method, f"/api/runs/no-such-run/{action}").status_code == 404


@pytest.fixture
def local_server(tmp_path):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (make install)")
    data_dir = tmp_path / "local"
    srv = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05), runner=LocalRunner(Layout(data_dir)))
    srv.start()
    yield srv
    srv.stop()


def test_following_a_log_while_the_run_writes(local_server):
    from apiclient import Api

    api = Api(local_server.url.removesuffix("/api"))
    script = "for i in 1 2 3; do echo line $i; sleep 0.5; done"
    p = plan(api, entrypoint=["sh", "-c", script], args=[])
    api.push({"x": "1"}, "type:dataset")
    run = the_run(api, p["planId"], "running")
    seen = []
    with requests.get(f"{api.url}/api/runs/{run['runId']}/log?follow", stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            seen.append((line.decode(), time.monotonic()))
    assert [text for text, _ in seen] == ["line 1", "line 2", "line 3"]
    assert seen[-1][1] - seen[0][1] > 0.8  # the lines came as they were written, not at the end
    assert the_run(api, p["planId"], "done")
    assert api.call("GET", f"/api/runs/{run['runId']}/log").text == "line 1\nline 2\nline 3\n"
    api.http.close()
