"""The Kubernetes runner keeps the runner contract (tests/runner_contract.py), with the test's own
Job controller and kubelet running the contract's fake programs.
"""

from __future__ import annotations

import pytest
from runner_contract import RunnerContract

pytest_plugins = ["k8s_helpers"]  # the cluster, runner, clock and timed fixtures


class TestKubernetesRunner(RunnerContract):
    @pytest.fixture
    def runner(self, cluster, store):
        cluster.play(store.layout.root)
        return cluster.runner(store.layout)

    def program(self, kind):
        return ["fake"], [kind]
