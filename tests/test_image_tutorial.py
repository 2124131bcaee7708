"""The guide's image steps, verbatim but without a Docker engine: build an image (an OCI layout of
busybox-static), push it to ``knitfab serve``'s registry with skopeo, save it as a ``docker save``
archive, ``knit plan template`` from that archive, apply it without an ``entrypoint:`` and see the
image's own ENTRYPOINT/CMD read the input and write the output. Then the same with ``knit image
push`` and ``knit plan template --image`` for users without a docker client."""

import pytest
import yaml
from helpers import wait_for
from knit_helpers import ok
from oci_helpers import have, oci_layout, push_layout, skopeo

from knitfab.server import Config, KnitfabServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have("bwrap", "skopeo"), reason="needs bwrap and skopeo")]
# The image's Cmd names /in/text and /out/result: the template finds the mountpoints from them.
CMD = ["/in/text", "/out/result"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    srv = KnitfabServer(Config(port=0, registry_port=0, data_dir=tmp_path / "data", poll=0.05))
    srv.start()
    (tmp_path / "home").mkdir()
    (tmp_path / "project").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "project")
    ok("init", str(srv.store.layout.handout / "knitprofile"))
    yield srv, tmp_path
    srv.stop()


def run_plan_file(tmp_path, plan_text: str) -> tuple[dict, str]:
    """Apply a template as written (no entrypoint), push a text Data, wait; (run, result)."""
    plan = yaml.safe_load(plan_text)
    assert plan["inputs"][0]["path"] == "/in/text" and plan["outputs"][0]["path"] == "/out/result"
    del plan["entrypoint"], plan["args"]  # as the guide's plans: the image's own ENTRYPOINT/CMD run
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    plan_id = ok("plan", "apply", str(tmp_path / "plan.yaml")).json()["planId"]
    (tmp_path / "text").mkdir(exist_ok=True)
    (tmp_path / "text" / "a.txt").write_text("knit me\n")
    tags = [t for tag in plan["inputs"][0]["tags"] for t in ("-t", tag)]
    ok("data", "push", *tags, str(tmp_path / "text"))

    def ended():
        found = ok("run", "find", "-p", plan_id).json()
        return [r for r in found if r["status"] in ("done", "failed")]

    (run,) = wait_for(ended, timeout=60)
    ok("data", "pull", "-x", run["outputs"][0]["knitId"], str(tmp_path / "pulled"))
    return run, (tmp_path / "pulled" / run["outputs"][0]["knitId"] / "result").read_text()


def test_the_guides_steps_with_skopeo_and_a_docker_save_archive(project):
    srv, tmp_path = project
    layout = oci_layout(tmp_path / "built", tag="v1", Cmd=CMD)
    pushed = push_layout(layout, srv.registry_host, "first-knitfab-project")
    assert pushed.returncode == 0, pushed.stderr
    archive = tmp_path / "image.tar"
    reference = "localhost:30503/first-knitfab-project:v1"
    saved = skopeo("copy", f"oci:{layout}:v1", f"docker-archive:{archive}:{reference}")
    assert saved.returncode == 0, saved.stderr
    template = ok("plan", "template", "-i", str(archive)).out
    assert f'image: "{reference}"' in template
    run, result = run_plan_file(tmp_path, template)
    assert run["status"] == "done", run
    assert result == "KNIT ME\n"


def test_knit_image_push_and_a_template_from_the_registry(project):
    srv, tmp_path = project
    layout = oci_layout(tmp_path / "built", tag="v2", Cmd=CMD)
    archive = tmp_path / "image.tar"
    skopeo("copy", f"oci:{layout}:v2", f"docker-archive:{archive}:localhost:30503/upper:v2")
    out = ok("image", "push", "--registry", srv.registry_host, str(archive)).out
    assert out == f"{srv.registry_host}/upper:v2\n"
    template = ok("plan", "template", "--image", "localhost:30503/upper:v2", "--registry", srv.registry_host).out
    assert yaml.safe_load(template)["args"] == CMD
    run, result = run_plan_file(tmp_path, template)
    assert run["status"] == "done" and result == "KNIT ME\n"


def test_knit_image_push_takes_an_oci_archive_too(project):
    srv, tmp_path = project
    layout = oci_layout(tmp_path / "built", tag="v3")
    assert skopeo("copy", f"oci:{layout}:v3", f"oci-archive:{tmp_path}/oci.tar:v3").returncode == 0
    out = ok("image", "push", "--registry", srv.registry_host, "--tag", "ociapp:v3", str(tmp_path / "oci.tar")).out
    assert out == f"{srv.registry_host}/ociapp:v3\n"
    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{srv.registry_host}/ociapp:v3")
    assert inspect.returncode == 0 and '"GREETING=hello"' in inspect.stdout
