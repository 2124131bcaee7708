"""Every runner passes the same contract (runner_contract.py)."""

import json
import shutil
from pathlib import Path

import pytest
from fake_runner import FakeRunner
from runner_contract import RunnerContract

from knitfab.runners import limits
from knitfab.runners.local import LocalRunner

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (make install)")


class TestFakeRunner(RunnerContract):
    @pytest.fixture
    def runner(self, store):
        return FakeRunner(store.layout)

    def program(self, kind):
        return ["fake"], {"succeed": ["succeed"], "fail": ["fail", "3"], "hang": ["hang"]}[kind]


@needs_bwrap
@pytest.mark.slow
class TestLocalRunner(RunnerContract):
    @pytest.fixture
    def runner(self, store):
        runner = LocalRunner(store.layout, grace=2)
        yield runner
        for groups in runner.workdir.folder.glob("*/cgroups"):  # of workers a test never cleans up
            limits.remove_cgroups([Path(g) for g in json.loads(groups.read_text())])

    def program(self, kind):
        script = {
            "succeed": "echo hello; cat /in/dataset/rows.csv > /out/result/result",
            "fail": "echo oops >&2; exit 3",
            "hang": "echo started; sleep 60",
        }[kind]
        return ["sh", "-c", script], []
