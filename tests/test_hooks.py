"""Lifecycle hooks (§10.1): a real HTTP receiver on loopback is told of every engine step."""

import json
import logging
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from fake_runner import FakeRunner
from helpers import apply, drive, push, runs_of, wait_for

from knitfab.__main__ import _extensions
from knitfab.api import render
from knitfab.engine import Engine
from knitfab.hooks import Hooks, config_fields
from knitfab.runners.k8sjob import main_container
from knitfab.runners.protocol import Job
from knitfab.server import Config, KnitfabServer
from knitfab.store import runs
from knitfab.store.layout import Layout


class Receiver:
    """An HTTP server on loopback that records each POST and answers as ``answers[path]`` says:
    (status, content type, body), or a number of seconds to stall first."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.answers: dict[str, tuple[int, str, object]] = {}
        self.stall: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.calls.append((self.path, body))
                time.sleep(receiver.stall.get(self.path, 0))
                status, kind, answer = receiver.answers.get(self.path, (200, "text/plain", "ok"))
                data = (json.dumps(answer) if kind == "application/json" else str(answer)).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True).start()

    def statuses(self, path: str) -> list[str]:
        return [body["status"] for p, body in self.calls if p == path]

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hooked(store, receiver, runner=None, **kwargs) -> Engine:
    engine = Engine(store, runner or FakeRunner(store.layout))
    engine.hooks = Hooks([f"{receiver.url}/before"], [f"{receiver.url}/after"], **kwargs)
    return engine


def test_every_engine_step_is_told_before_and_after_with_the_run(store, receiver):
    engine = hooked(store, receiver)
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    push(store, "type:dataset")  # the upload's run is not the engine's: no hook
    engine.run_until_idle()
    (run_id, status), *_ = runs_of(store, plan.plan_id)
    assert status == "done"
    assert receiver.statuses("/before") == ["waiting", "ready", "starting", "completing"]
    assert receiver.statuses("/after") == ["ready", "starting", "completing", "done"]
    assert {body["runId"] for _, body in receiver.calls} == {run_id}
    last = receiver.calls[-1][1]
    assert last == render.run(runs.show_run(store, run_id))  # the RunDetail JSON, as the API shows it
    assert list(last) == ["runId", "status", "updatedAt", "exit", "plan", "inputs", "outputs", "log"]


def test_a_refusing_before_hook_holds_the_step_until_it_agrees(store, receiver):
    engine = hooked(store, receiver)
    plan = apply(store, {"/in": ["type:dataset"]}, args=["succeed"])
    push(store, "type:dataset")
    receiver.answers["/before"] = (503, "text/plain", "not now")
    engine.run_until_idle()
    engine.run_until_idle()
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["waiting"]
    assert set(receiver.statuses("/before")) == {"waiting"} and len(receiver.calls) >= 2  # asked again
    assert receiver.statuses("/after") == []
    del receiver.answers["/before"]
    engine.run_until_idle()
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["done"]


def test_a_down_hook_holds_the_step_and_is_not_called_again_at_once(store, receiver, caplog):
    engine = hooked(store, receiver, timeout=0.2)
    plan = apply(store, {"/in": ["type:dataset"]}, args=["succeed"])
    push(store, "type:dataset")
    receiver.stall["/before"] = 1.0  # longer than the timeout: down
    with caplog.at_level(logging.WARNING, logger="knitfab.hooks"):
        engine.run_until_idle()
        engine.run_until_idle()
    assert len(receiver.calls) == 1 and "is down (ReadTimeout)" in caplog.text
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["waiting"]
    del receiver.stall["/before"]
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] == "done", timeout=10)  # after its back-off


def test_a_dead_after_hook_changes_nothing(store, receiver):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/after"
    engine = Engine(store, FakeRunner(store.layout))
    engine.hooks = Hooks([], [dead])
    plan = apply(store, {"/in": ["type:dataset"]}, args=["succeed"])
    push(store, "type:dataset")
    engine.run_until_idle()
    assert [s for _, s in runs_of(store, plan.plan_id)] == ["done"]


def test_a_users_abort_calls_no_hook_but_finishing_does(store, receiver):
    engine = hooked(store, receiver)
    plan = apply(store, {"/in": ["type:dataset"]}, args=["hang"])
    push(store, "type:dataset")
    engine.run_until_idle()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    told = len(receiver.calls)
    runs.abort(store, run_id)
    assert len(receiver.calls) == told
    engine.run_until_idle()
    assert receiver.statuses("/before")[-1] == "aborting" and receiver.statuses("/after")[-1] == "failed"


class RecordingRunner(FakeRunner):
    def start(self, job: Job) -> str:
        self.env = dict(job.env)
        return super().start(job)


def extension(env: dict) -> tuple[int, str, dict]:
    return 200, "application/json", {"knitfabExtension": {"env": env}}


def test_before_starting_hooks_inject_env_later_ones_winning(store, receiver):
    runner = RecordingRunner(store.layout)
    engine = Engine(store, runner)
    engine.hooks = Hooks([f"{receiver.url}/a", f"{receiver.url}/b", f"{receiver.url}/c"], [])
    receiver.answers["/a"] = extension({"TOKEN": "from-a", "ONLY_A": "1"})
    receiver.answers["/b"] = extension({"TOKEN": "from-b"})
    receiver.answers["/c"] = (200, "text/plain", json.dumps({"knitfabExtension": {"env": {"TOKEN": "not json"}}}))
    apply(store, {"/in": ["type:dataset"]}, args=["succeed"])
    push(store, "type:dataset")
    engine.run_until_idle()
    assert runner.env == {"TOKEN": "from-b", "ONLY_A": "1"}
    assert [p for p, body in receiver.calls if body["status"] == "ready"] == ["/a", "/b", "/c"]


def test_injected_env_goes_into_the_kubernetes_worker():
    job = Job(run_id="r1", plan_id="p1", image="repo/train:v1", env={"TOKEN": "t"})
    assert main_container(job)["env"] == [{"name": "KNIT_RUN_ID", "value": "r1"}, {"name": "TOKEN", "value": "t"}]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/bwrap"), reason="bubblewrap is not installed (make install)")
def test_injected_env_reaches_a_run_in_the_local_sandbox(store, receiver):
    from knitfab.runners.local import LocalRunner

    engine = hooked(store, receiver, runner=LocalRunner(store.layout, grace=1))
    receiver.answers["/before"] = extension({"HOOKED": "hello from a hook"})
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]},
                 entrypoint=["sh", "-c", 'printf %s "$HOOKED" > /out/env'], args=[])  # fmt: skip
    push(store, "type:dataset")
    drive(engine, lambda: runs_of(store, plan.plan_id)[0][1] in ("done", "failed"))
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.status == "done"
    assert (store.layout.data(run.outputs[0].knit_id) / "env").read_text() == "hello from a hook"


def test_the_config_file_takes_knitfabs_helm_values(tmp_path, receiver):
    config = tmp_path / "knitfab.yaml"
    doc = {"hooks": {"lifecycle-hooks": {"before": [f"{receiver.url}/before"], "after": [], "timeout": 3}}}
    config.write_text(yaml.safe_dump(doc))
    fields = _extensions(config)
    assert fields["hooks_before"] == [f"{receiver.url}/before"] and fields["hook_timeout"] == 3.0
    data_dir = tmp_path / "kf"
    server = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05, **fields), runner=FakeRunner(Layout(data_dir)))
    server.start()
    try:
        plan = apply(server.store, {"/in": ["type:dataset"]}, args=["succeed"])
        push(server.store, "type:dataset")
        server.engine.wake()
        wait_for(lambda: [s for _, s in runs_of(server.store, plan.plan_id)] == ["done"])
        assert receiver.statuses("/before") == ["waiting", "ready", "starting", "completing"]
    finally:
        server.stop()


@pytest.mark.parametrize(
    "hooks, words",
    [
        ({"before": "http://x"}, "before must be a list of http(s) URLs"),
        ({"after": ["ftp://x"]}, "after must be a list of http(s) URLs"),
        ({"timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_bad_hook_configs_are_refused(hooks, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        config_fields({"hooks": {"lifecycle-hooks": hooks}})
