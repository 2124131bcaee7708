"""Every ``knit`` command against a real server on an ephemeral port, in a temporary HOME."""

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from helpers import wait_for
from knit_helpers import knit, ok

from knit.cli import build_parser
from knitfab.store.jobs import load_job

pytestmark = pytest.mark.slow


@pytest.fixture
def project(server, tmp_path, monkeypatch):
    """A project folder whose profile points at the server (``knit init`` done)."""
    home, folder = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(folder)
    ok("init", str(server.store.layout.handout / "knitprofile"))
    return folder


def dataset(folder: Path, name="dataset", files=None) -> Path:
    root = folder / name
    root.mkdir()
    for rel, text in (files or {"train.csv": "1,2\n", "sub/labels.txt": "a\n"}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_init_writes_the_profile_store_and_the_marker(server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = ok("init", str(server.store.layout.handout / "knitprofile"))
    store = tmp_path / ".knit" / "profile"
    assert f"profile {tmp_path} is saved to {store}" in result.err
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(store.read_text()) == {str(tmp_path): {"apiRoot": server.url, "cert": {}}}
    assert (tmp_path / ".knitprofile").read_text() == str(tmp_path)
    ok("init", "--profile", "other", str(server.store.layout.handout / "knitprofile"))
    assert (tmp_path / ".knitprofile").read_text() == "other"


def test_init_refuses_a_bad_handout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad").write_text("apiRoot: not-a-url\n")
    result = knit("init", "bad")
    assert result.rc == 1 and "apiRoot must be an absolute" in result.err


def test_push_find_tag_and_pull(project):
    (project / "knitenv").write_text("tag:\n  - project:first\n  - knit#id:ignored\nresource:\n  cpu: 2\n")
    result = ok("data", "push", "-t", "type:dataset", "-n", str(dataset(project)), "missing-dir")
    assert not result.out.endswith("\n")
    pushed = json.loads(result.out)
    assert [t for t in pushed["tags"] if not t.startswith("knit#")] == ["name:dataset", "project:first", "type:dataset"]
    assert "missing-dir is not a directory: skipped" in result.err
    found = ok("data", "find", "-t", "type:dataset", "--transient", "no").json()
    assert [d["knitId"] for d in found] == [pushed["knitId"]]
    assert ok("data", "find", "--transient", "yes").json() == []
    knit_id = pushed["knitId"]
    tagged = ok("data", "tag", knit_id, "--add", "mode:training", "--remove-key", "name")
    assert tagged.out == "" and "mode:training" in tagged.err
    ok("data", "pull", "-x", knit_id, "out")
    assert (project / "out" / knit_id / "sub" / "labels.txt").read_text() == "a\n"
    ok("data", "pull", knit_id, "~/saved")
    archive = Path(os.environ["HOME"]) / "saved" / f"{knit_id}.tar.gz"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["sub/labels.txt", "train.csv"]
    raw = ok("data", "pull", knit_id, "-").raw
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["sub/labels.txt", "train.csv"]


def test_push_several_sources_prints_each_detail(project):
    result = ok("data", "push", str(dataset(project, "a")), str(dataset(project, "b")))
    first, second = result.out.split("}{")
    assert json.loads(first + "}")["knitId"] != json.loads("{" + second)["knitId"]


def test_find_by_time(project):
    ok("data", "push", "-t", "a:b", str(dataset(project)))
    assert len(ok("data", "find", "--since", "2000-01-01", "--duration", "876000h").json()) == 1
    assert ok("data", "find", "--since", "2000-01-01 00Z", "--duration", "1h").json() == []


@pytest.mark.parametrize(
    "args",
    [
        ("data", "push", "-t", "knit#id:x", "."),
        ("data", "push", "-t", "nocolon", "."),
        ("data", "tag", "x", "--add", "knit#timestamp:2024-01-01T00:00:00Z"),
        ("data", "tag", "x", "--remove-key", "knit#id"),
        ("data", "pull", "-x", "x", "-"),
        ("data", "lineage", "-n", "0", "x"),
        ("data", "find", "--duration", "1h"),
        ("data", "find", "--since", "yesterday"),
        ("data", "find", "-t", "badtag"),
        ("plan", "find", "-i", "badtag"),
        ("plan", "find", "-o", ":novalue"),
        ("plan", "template", "--scratch", "image:1"),
        ("plan", "active", "maybe", "x"),
        ("plan", "serviceaccount", "x"),
        ("plan", "serviceaccount", "x", "--set", "a", "--unset"),
        ("plan", "resource", "x", "--set", "cpu"),
        ("data", "push"),
        ("data", "frobnicate"),
        ("nonsense",),
    ],
)
def test_usage_errors_exit_2_with_the_help(project, args):
    result = knit(*args)
    assert result.rc == 2, result
    assert result.err.startswith("error: ") and "usage: knit" in result.err


def test_help_goes_to_stderr_and_exits_0(project):
    for args in (("-h",), ("data", "push", "--help"), ("plan", "-h"), ("run", "find", "-h")):
        result = knit(*args)
        assert result.rc == 0 and result.out == "" and "usage: knit" in result.err


def test_version_and_license(project):
    assert ok("version").out.startswith("0.1.0 (commit: ")
    assert not ok("version").out.endswith("\n")
    assert "requests" in ok("license").out


HEAVY = ("requests", "urllib3", "yaml", "shtab", "tqdm", "tarfile", "http.client", "email", "ssl")
# What `knit version` needs none of: the modules of the other commands, and the standard library's
# slow imports (inspect through dataclasses, typing, subprocess for git, shutil through argparse).
NOT_FOR_VERSION = (*HEAVY, "inspect", "dataclasses", "typing", "subprocess", "shutil", "json", "datetime", "hashlib")
NOT_FOR_VERSION += ("knit.client", "knit.profiles", "knit.datacmds", "knit.plancmds", "knit.graphs", "knit.http1")


def imported_by(argv: list[str], cwd=None) -> tuple[str, set[str]]:
    """What ``knit <argv>`` printed, and the modules it imported, run in a fresh interpreter."""
    probe = f"import sys; from knit.cli import main; main({argv!r}); print(); print(*sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=60)
    return done.stdout, set(done.stdout.splitlines()[-1].split())


def test_knit_version_imports_nothing_it_does_not_need(project):
    out, loaded = imported_by(["version"])
    assert out.startswith("0.1.0 (commit: ")
    assert sorted(loaded & set(NOT_FOR_VERSION)) == []


def test_knit_data_find_imports_no_requests_nor_the_other_commands(project):
    ok("data", "push", "-t", "a:b", str(dataset(project)))
    out, loaded = imported_by(["data", "find", "-t", "a:b"], cwd=project)
    assert [d["tags"] for d in json.loads(out.rsplit("\n", 2)[0])][0][0] == "a:b"
    assert "knit.http1" in loaded  # the client's own HTTP/1.1 (knit/session.py)
    assert sorted(loaded & {"requests", "urllib3", "yaml", "inspect", "dataclasses", "typing", "tarfile", "tqdm"}) == []
    # http.client and email ~30 ms, ssl (not for an http:// server) ~10, socket ~8, the idna codec ~4
    assert sorted(loaded & {"http.client", "email", "ssl", "socket", "encodings.idna"}) == []
    assert sorted(m for m in loaded if m.startswith("knit.") and m.endswith("cmds")) == ["knit.datacmds"]


def test_knit_version_prints_the_commit_of_the_checkout_without_running_git():
    from knit.buildinfo import git_head

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
    assert git_head(str(Path(__file__).parents[1])) == head[:7]


def test_completion_is_printed_and_the_help_is_the_same_without_shtab(project):
    assert build_parser().format_help() == build_parser(completion=True).format_help()
    assert build_parser(groups_used=set()).format_help() == build_parser().format_help()  # `knit -h`
    assert "--print-completion {bash,zsh,tcsh,fish,powershell}" in knit("-h").err
    argv = [sys.executable, "-m", "knit", "--print-completion", "bash"]
    script = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "complete -o bashdefault -F _shtab_knit knit" in script


PLAN = """
image: "example.com/train:v1"
entrypoint: ["fake"]
args: ["hang"]
inputs:
  - path: "/in/dataset"
    tags: ["type:dataset"]
outputs:
  - path: "/out/model"
    tags: ["type:model"]
log:
  tags: ["type:log"]
resources:
  cpu: 1
  memory: 1Gi
annotation: ["ignored=yes"]
"""


def applied(project) -> dict:
    (project / "train.plan.yaml").write_text(PLAN)
    return ok("plan", "apply", "train.plan.yaml").json()


def test_plan_commands(project):
    plan = applied(project)
    plan_id = plan["planId"]
    assert "annotations" not in plan  # "annotation" is not a key: ignored, as in Knitfab
    assert ok("plan", "show", plan_id).json() == plan
    found = ok("plan", "find", "--image", "example.com/train:v1", "-i", "type:dataset").json()
    assert [p["planId"] for p in found] == [plan_id]
    assert ok("plan", "find", "--active", "no").json() == []
    assert ok("plan", "active", "no", plan_id).json()["active"] is False
    result = ok("plan", "resource", plan_id, "--set", "cpu=500m", "--unset", "memory")
    assert result.out.startswith('{\n  "planId"') and not result.out.endswith("\n")
    assert json.loads(result.out)["resources"] == {"cpu": "500m"} and f"Plan:{plan_id} is updated." in result.err
    assert "Nothing to do." in ok("plan", "resource", plan_id).err
    assert ok("plan", "annotate", plan_id, "--add", "owner=me").json()["annotations"] == ["owner=me"]
    assert ok("plan", "serviceaccount", plan_id, "--set", "trainer").json()["service_account"] == "trainer"
    assert "service_account" not in ok("plan", "serviceaccount", plan_id, "--unset").json()


def test_plan_apply_warns_about_unknown_keys_and_names_the_right_one(project):
    (project / "typo.plan.yaml").write_text(PLAN.replace("resources:", "resouces:"))
    result = ok("plan", "apply", "typo.plan.yaml")
    assert "unknown key 'resouces' is ignored (did you mean resources?)" in result.err
    assert "unknown key 'annotation' is ignored (did you mean annotations?)" in result.err
    # in a mountpoint the server refuses the key; the warning still names the right one
    (project / "nested.plan.yaml").write_text(PLAN.replace('tags: ["type:model"]', 'tag: ["type:model"]'))
    result = knit("plan", "apply", "nested.plan.yaml")
    assert result.rc == 1 and "unknown key in outputs[0]: 'tag' (did you mean tags?)" in result.err


def test_a_plan_without_unknown_keys_applies_without_a_warning(project):
    (project / "clean.plan.yaml").write_text(PLAN.replace('annotation: ["ignored=yes"]', ""))
    assert "[WARN]" not in ok("plan", "apply", "clean.plan.yaml").err


def test_pulling_an_unknown_data_leaves_no_folder_behind(project):
    for flags in ((), ("-x",)):
        result = knit("data", "pull", *flags, "no-such-data", "fresh/folder")
        assert result.rc == 1 and "knitId:no-such-data is not found" in result.err
        assert not (project / "fresh").exists()


def test_a_local_error_while_pulling_is_not_called_a_connection_error(project):
    knit_id = ok("data", "push", str(dataset(project))).json()["knitId"]
    (project / "out" / f"{knit_id}.tar.gz").mkdir(parents=True)  # where the archive goes: a folder
    result = knit("data", "pull", knit_id, "out")
    assert result.rc == 1 and "Is a directory" in result.err and "cannot connect" not in result.err
    assert "Traceback" not in result.err
    shown = knit("data", "pull", knit_id, "out", "--traceback")
    assert shown.rc == 1 and "Traceback (most recent call last)" in shown.err and "Is a directory" in shown.err


def test_plan_apply_errors(project):
    applied(project)
    result = knit("plan", "apply", "train.plan.yaml")
    assert result.rc == 1 and "invalid request" in result.err and "there are equiverent plan" in result.err
    (project / "broken.yaml").write_text("image: [unclosed")
    assert knit("plan", "apply", "broken.yaml").rc == 1


def test_run_commands(server, project):
    plan = applied(project)
    ok("data", "push", "-t", "type:dataset", str(dataset(project)))
    wait_for(lambda: ok("run", "find", "-p", plan["planId"], "-s", "running").json())
    (run,) = ok("run", "find", "-p", plan["planId"]).json()
    run_id = run["runId"]
    assert ok("run", "show", run_id).json()["status"] == "running"
    server.runner.finish(load_job(server.store, run_id), 0)
    wait_for(lambda: ok("run", "show", run_id).json()["status"] == "done")
    assert ok("run", "show", "--log", run_id).out == f"run {run_id} exits 0\n"
    found = ok("run", "find", "-s", "done", "-s", "failed", "-i", run["inputs"][0]["knitId"]).json()
    assert [r["runId"] for r in found] == [run_id]
    assert f"requested to retry Run: {run_id}" in ok("run", "retry", run_id).err
    wait_for(lambda: ok("run", "show", run_id).json()["status"] == "running")
    assert f"Run Id: {run_id} is aborting." in ok("run", "stop", "-x", run_id).err
    wait_for(lambda: ok("run", "show", run_id).json()["status"] == "failed")
    assert f"deleted Run Id:{run_id}" in ok("run", "rm", run_id).err


def test_server_errors_exit_1_with_the_servers_message(project):
    result = knit("run", "show", "no-such-run")
    assert result.rc == 1
    assert result.err.splitlines()[0] == "error: runId:no-such-run is not found"
    assert "not found" in result.err.splitlines()[1]
    result = knit("plan", "active", "yes", "no-such-plan")
    assert result.rc == 1 and "planId:no-such-plan is not found" in result.err


def test_a_server_that_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "handout").write_text("apiRoot: http://127.0.0.1:9/api\ncert: {}\n")
    ok("init", "handout")
    result = knit("data", "find")
    assert result.rc == 1
    assert "cannot connect to http://127.0.0.1:9/api: is the server running?" in result.err


def test_missing_profile_store(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = knit("data", "find")
    assert result.rc == 1 and "Please try `knit init` first" in result.err
    result = knit("--profile-store", str(tmp_path / "nowhere"), "data", "find")
    assert result.rc == 1 and str(tmp_path / "nowhere") in result.err


def test_global_flags_anywhere(server, project):
    other = project.parent / "elsewhere"
    other.mkdir()
    ok("init", "--profile", "named", str(server.store.layout.handout / "knitprofile"))
    os.chdir(other)
    assert knit("data", "find").rc == 1  # no .knitprofile here: the folder's path names no profile
    assert ok("data", "find", "--profile", "named").json() == []
    assert ok("--profile", "named", "data", "find").json() == []


def test_extension_commands(project, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "knit-hello"
    report = tmp_path / "report"
    script.write_text(f'#!/bin/sh\necho "$KNIT_PROFILE|$KNIT_PROFILE_STORE|$KNIT_ENV|$*" > {report}\nexit $1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert knit("hello", "0", "--profile", "p1", "x").rc == 0
    profile, store, env, args = report.read_text().strip().split("|")
    assert (profile, args) == ("p1", "0 x")
    assert store == str(Path(os.environ["HOME"]) / ".knit" / "profile")
    assert env == str(project / "knitenv")
    assert knit("hello", "3").rc == 1


def test_lineage_and_plan_graph(server, project, monkeypatch):
    plan = applied(project)
    pushed = json.loads(ok("data", "push", "-t", "type:dataset", str(dataset(project))).out)
    wait_for(lambda: ok("run", "find", "-p", plan["planId"], "-s", "running").json())
    (run,) = ok("run", "find", "-p", plan["planId"]).json()
    server.runner.finish(load_job(server.store, run["runId"]), 0)
    wait_for(lambda: ok("run", "show", run["runId"]).json()["status"] == "done")
    model, log = run["outputs"][0]["knitId"], run["log"]["knitId"]
    upload = pushed["upstream"]["run"]["runId"]
    dot = ok("data", "lineage", "-n", "all", model).out
    edges = [line.strip() for line in dot.splitlines() if "->" in line]
    assert sorted(edges) == sorted(
        [
            f'"r{run["runId"]}" -> "d{model}" [label="/out/model"];',
            f'"d{pushed["knitId"]}" -> "r{run["runId"]}" [label="/in/dataset"];',
            f'"r{run["runId"]}" -> "d{log}" [label="(log)"];',
            f'"r{upload}" -> "d{pushed["knitId"]}" [label="/upload"];',
            f'"root#0" -> "r{upload}";',
        ]
    )  # their order is test_knit_graphs.py's business
    assert ok("plan", "graph", plan["planId"]).out.startswith("digraph G {")
    ok("data", "lineage", model, "-o", "lineage.svg")
    assert (project / "lineage.svg").read_text().lstrip().startswith("<?xml")
    monkeypatch.setenv("PATH", "/nonexistent")
    result = knit("data", "lineage", model, "-o", "lineage.png")
    assert result.rc == 1 and "apt-get install graphviz" in result.err
    assert (project / "lineage.dot").read_text() == ok("data", "lineage", model).out
