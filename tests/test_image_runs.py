"""The local runner runs a plan's image from the server's registry (real skopeo, real bubblewrap)."""

import os

import pytest
import requests
from helpers import wait_for
from oci_helpers import busybox_layer, entry, have, oci_layout, push_layout, tar_layer

from knit.client import KnitClient
from knitfab.server import Config, KnitfabServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have("bwrap", "skopeo"), reason="needs bubblewrap and skopeo (make install)"),
]


def plan(image, **extra):
    doc = {
        "image": image,
        "inputs": [{"path": "/in/text", "tags": ["type:text"]}],
        "outputs": [{"path": "/out/result", "tags": ["type:result"]}],
        "log": {"tags": ["type:log"]},
    }
    doc.update(extra)
    return doc


@pytest.fixture
def knitfab(tmp_path):
    def start(**settings):
        srv = KnitfabServer(Config(port=0, registry_port=0, data_dir=tmp_path / "data", poll=0.05, **settings))
        srv.start()
        started.append(srv)
        return srv, KnitClient(srv.url)

    started = []
    yield start
    for srv in started:
        srv.stop()


def run_once(client, tmp_path, doc, text="hello images\n"):
    """Apply ``doc``, push one text Data, wait for its run to end; (run, files of its output, log)."""
    applied = client.apply_plan(doc)
    (tmp_path / "text").mkdir(exist_ok=True)
    (tmp_path / "text" / "words.txt").write_text(text)
    pushed = client.push_dir(tmp_path / "text", ["type:text"])["knitId"]
    ended = ("done", "failed")
    # the run of this Data: a later plan also matches the Data pushed before it
    runs = lambda: client.find_runs(plan_ids=[applied["planId"]], knit_ids_in=[pushed])  # noqa: E731
    (run,) = wait_for(lambda: [r for r in runs() if r["status"] in ended])
    knit_id = run["outputs"][0]["knitId"]
    client.pull(knit_id, tmp_path / "pulled", extract=True)
    out = tmp_path / "pulled" / knit_id
    log = b"".join(client.run_log(run["runId"])).decode()
    return run, {p.name: p.read_text() for p in out.iterdir()}, log


def test_a_plan_without_entrypoint_runs_the_images_entrypoint_and_cmd(knitfab, tmp_path):
    srv, client = knitfab()
    assert push_layout(oci_layout(tmp_path / "layout"), srv.registry_host, "upper").returncode == 0
    run, files, log = run_once(client, tmp_path, plan("localhost:30503/upper:v1"))
    assert run["status"] == "done", log
    assert files["result"] == "HELLO IMAGES\n"
    # the image's User (app = 1000), WorkingDir, Env and Cmd were honoured
    assert files["about"] == "uid=1000 cwd=/app greeting=hello args=/in/text /out/result\n"
    assert "host mode" not in log


def test_the_plans_entrypoint_and_args_override_the_images(knitfab, tmp_path):
    srv, client = knitfab()
    push_layout(oci_layout(tmp_path / "layout"), srv.registry_host, "upper")
    doc = plan("upper:v1", args=["/in/text", "/out/result", "extra"])
    run, files, _ = run_once(client, tmp_path, doc)
    assert files["about"].endswith("args=/in/text /out/result extra\n")
    script = "id -u > /out/result/who; pwd >> /out/result/who"
    doc = plan(f"{srv.registry_host}/upper:v1", entrypoint=["/bin/sh", "-c", script])
    run, files, log = run_once(client, tmp_path, doc, "other\n")
    assert run["status"] == "done", log
    assert files == {"who": "1000\n/app\n"}


def test_the_images_root_is_read_only_and_tmp_is_private(knitfab, tmp_path):
    srv, client = knitfab()
    push_layout(oci_layout(tmp_path / "layout"), srv.registry_host, "upper")
    script = "echo x > /tmp/scratch && cat /tmp/scratch > /out/result/tmp; "
    script += "echo x > /app/run.sh || echo refused > /out/result/ro"
    run, files, log = run_once(client, tmp_path, plan("upper:v1", entrypoint=["/bin/sh", "-c", script]))
    assert files == {"tmp": "x\n", "ro": "refused\n"}, log
    (root,) = (srv.store.layout.root / "rootfs").iterdir()
    assert (root / "root" / "app" / "run.sh").read_text().startswith("#!/bin/sh")


def test_a_plan_path_through_a_symlink_of_the_image_is_refused(knitfab, tmp_path):
    srv, client = knitfab()
    evil = tar_layer([entry("in", b"2", "/etc")])  # /in/text would be made on the host's /etc
    push_layout(oci_layout(tmp_path / "layout", layers=[busybox_layer(), evil]), srv.registry_host, "evil")
    run, _, _ = run_once(client, tmp_path, plan("evil:v1"))
    assert run["status"] == "failed"
    assert "/in" in run["exit"]["message"] and "symlink" in run["exit"]["message"]
    assert not os.path.exists("/etc/text")


def test_host_mode_says_so_in_the_first_line_of_the_log(knitfab, tmp_path):
    _, client = knitfab()
    doc = plan("not-pushed:v1", entrypoint=["sh", "-c", "cat /in/text/* > /out/result/copy"])
    run, files, log = run_once(client, tmp_path, doc)
    assert run["status"] == "done" and files == {"copy": "hello images\n"}
    first = log.splitlines()[0]
    assert "host mode" in first and "docker push localhost:" in first and "/not-pushed:v1" in first


def test_a_plan_that_cannot_run_is_refused_at_apply_with_the_push_command(knitfab, tmp_path):
    srv, client = knitfab(host_mode=False)
    for doc in (plan("missing:v2"), plan("missing:v2", entrypoint=["true"])):
        response = requests.post(srv.url + "/plans/", json=doc, timeout=10)
        assert response.status_code == 400
        assert f"docker push {srv.registry_host}/missing:v2" in response.json()["message"]
    push_layout(oci_layout(tmp_path / "layout", tag="v2"), srv.registry_host, "missing", "v2")
    assert requests.post(srv.url + "/plans/", json=plan("missing:v2"), timeout=10).status_code == 200
    # applying it starts unpacking the image, so its first run need not wait for that
    wait_for(lambda: [p for p in (srv.store.layout.root / "rootfs").iterdir() if not p.name.startswith(".")])


def test_an_image_from_another_registry_is_not_taken_from_ours(knitfab, tmp_path):
    srv, _ = knitfab()
    push_layout(oci_layout(tmp_path / "layout"), srv.registry_host, "upper")
    response = requests.post(srv.url + "/plans/", json=plan("example.com/upper:v1"), timeout=10)
    assert response.status_code == 400
    assert "docker tag example.com/upper:v1 localhost:" in response.json()["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the run user is a dedicated uid only under a root server")
def test_an_image_run_is_confined_as_a_host_mode_run_is(knitfab, tmp_path):
    """The image's root (uid 0 inside) is the unprivileged run user on the host, in its limits."""
    srv, client = knitfab()
    push_layout(oci_layout(tmp_path / "layout"), srv.registry_host, "upper")
    script = "id -u > /out/result/inside"
    run, files, log = run_once(client, tmp_path, plan("upper:v1", entrypoint=["/bin/sh", "-c", script]))
    assert run["status"] == "done" and files["inside"] == "1000\n", log
    written = srv.store.layout.data(run["outputs"][0]["knitId"]) / "inside"
    assert written.stat().st_uid == srv.runner.user.uid != 0, "the image's user is the run user on the host"
    hog = "a=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived"  # 100 MB in the shell's memory
    doc = plan("upper:v1", entrypoint=["/bin/sh", "-c", hog], resources={"memory": "64Mi"})
    run, _, log = run_once(client, tmp_path, doc, "again\n")
    assert run["status"] == "failed" and run["exit"]["code"] == 137, (run["exit"], log)
