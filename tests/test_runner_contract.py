"""Every runner passes the same contract (runner_contract.py)."""

import shutil

import pytest
from fake_runner import FakeRunner
from runner_contract import RunnerContract

from knitfab.local import LocalRunner

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
        return LocalRunner(store.layout, grace=2)

    def program(self, kind):
        script = {
            "succeed": "echo hello; cat /in/dataset/rows.csv > /out/result/result",
            "fail": "echo oops >&2; exit 3",
            "hang": "echo started; sleep 60",
        }[kind]
        return ["sh", "-c", script], []
