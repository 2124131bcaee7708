"""A real history for the console's tests: pushed Data, chained plans, and a done, a failed, a
running and a deleted run (the fake runner's workers hang until told)."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from apiclient import Api, make_tar
from fake_runner import FakeRunner
from helpers import wait_for

from knit.transport import connect, send_chunked
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout


def start_server(data_dir: Path, token: str | None = None, tls: bool = False) -> KnitfabServer:
    token_file = cert = key = None
    if token:
        token_file = data_dir.parent / f"{data_dir.name}.token"
        token_file.write_text(token)
    if tls:
        cert, key = data_dir.parent / "cert.pem", data_dir.parent / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
    config = Config(port=0, data_dir=data_dir, poll=0.05, token_file=token_file, cert=cert, key=key)
    server = KnitfabServer(config, FakeRunner(Layout(data_dir)))
    server.start()
    return server


@contextmanager
def served(data_dir: Path, token: str | None = None, tls: bool = False) -> Iterator[History]:
    """A server on ``data_dir`` with the history built, and a client for it."""
    server = start_server(data_dir, token, tls)
    url = server.url.removesuffix("/api")
    api = TokenApi(url, token) if token else Api(url)
    if tls:
        api.http.verify = str(data_dir.parent / "cert.pem")
        api.http.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, wins over verify
    try:
        yield build(api, server)
    finally:
        api.http.close()
        server.stop()


class TokenApi(Api):
    """``Api`` that sends a bearer token, on uploads too."""

    def __init__(self, url: str, token: str):
        super().__init__(url)
        self.http.headers["Authorization"] = f"Bearer {token}"

    def push(self, files: dict[str, str], *tags: str) -> dict:
        verify = self.http.verify
        conn = connect(self.url, ssl.create_default_context(cafile=verify) if isinstance(verify, str) else None)
        headers = {"Content-Type": "application/tar+gzip", "Authorization": self.http.headers["Authorization"]}
        resp = send_chunked(conn, "POST", "/api/data/", iter([make_tar(files)]), headers)
        detail = json.loads(resp.read())
        conn.close()
        assert resp.status == 200, detail
        if tags:
            detail = self.json("PUT", f"/api/data/{detail['knitId']}", json={"add": list(tags)})
        return detail


def plan_doc(image: str, inputs: dict, outputs: dict, args: list[str], **extra) -> dict:
    return {
        "image": image,
        "entrypoint": ["python", "main.py"],
        "args": args,
        "inputs": [{"path": p, "tags": t} for p, t in inputs.items()],
        "outputs": [{"path": p, "tags": t} for p, t in outputs.items()],
        "log": {"tags": ["type:log"]},
        **extra,
    }


@dataclass
class History:
    api: Api
    server: KnitfabServer
    data: dict[str, str] = field(default_factory=dict)  # name → knitId
    plans: dict[str, str] = field(default_factory=dict)  # name → planId
    runs: dict[str, str] = field(default_factory=dict)  # done / failed / running / deleted → runId

    def run_of(self, plan: str, status: str) -> dict:
        def found():
            got = self.api.json("GET", "/api/runs/", params={"plan": self.plans[plan], "status": status})
            return got and got[0]

        return wait_for(found)


def build(api: Api, server: KnitfabServer) -> History:
    """train (succeeds) → evaluate (fails); serve (hangs: running); scratch (done, then deleted)."""
    history = History(api, server)
    plans = {
        "train": plan_doc("example.com/train:v1", {"/in/dataset": ["type:dataset"]}, {"/out/model": ["type:model"]},
                          ["succeed"], resources={"cpu": "1", "memory": "1Gi"},
                          on_node={"may": ["gpu=yes"], "prefer": ["zone=a"], "must": ["os=linux"]},
                          annotations=["team=vision"], service_account="trainer"),
        "evaluate": plan_doc("example.com/evaluate:v1", {"/in/model": ["type:model"]},
                             {"/out/report": ["type:report"]}, ["fail", "3"]),
        "serve": plan_doc("example.com/serve:v1", {"/in/model": ["type:model"]}, {"/out/metrics": ["type:metrics"]},
                          ["hang"]),
        "scratch": plan_doc("example.com/scratch:v1", {"/in": ["kind:scratch"]}, {"/out": ["kind:trash"]},
                            ["succeed"]),
    }  # fmt: skip
    for name, doc in plans.items():
        history.plans[name] = api.json("POST", "/api/plans/", json=doc)["planId"]
    history.data["dataset"] = api.push({"train.csv": "a,b\n1,2\n"}, "type:dataset", "project:mnist")["knitId"]
    history.data["scratch"] = api.push({"x": "1"}, "kind:scratch")["knitId"]
    history.runs["done"] = history.run_of("train", "done")["runId"]
    history.runs["failed"] = history.run_of("evaluate", "failed")["runId"]
    running = history.run_of("serve", "running")
    history.runs["running"] = running["runId"]
    history.data["model"] = running["inputs"][0]["knitId"]
    history.data["running-log"] = running["log"]["knitId"]
    deleted = history.run_of("scratch", "done")["runId"]
    assert api.call("DELETE", f"/api/runs/{deleted}").status_code == 204
    assert api.json("GET", f"/api/runs/{deleted}")["status"] == "invalidated"
    history.runs["deleted"] = deleted
    return history
