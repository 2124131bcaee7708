"""Where the Kubernetes runner's workers run and what it reads from its environment
(knitfab/runners/k8sstorage.py, ``KubernetesRunner.from_environment``): the data PVC's access
mode and node affinity, the kubeconfig or service account, and the database's filesystem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import kmock
import kubernetes
import pytest
from k8s_cluster import PVC
from k8s_helpers import started

import knitfab.runners.k8s
from knitfab.errors import ConfigurationError
from knitfab.runners.k8s import KubernetesRunner
from knitfab.runners.k8sstorage import filesystem_of, refuse_network_database

pytest_plugins = ["k8s_helpers"]  # the cluster, runner, clock and timed fixtures


class TestFromEnvironment:
    def test_outside_a_cluster_the_kubeconfig_and_the_environment(self, cluster, store, tmp_path, monkeypatch):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "kind", "cluster": {"server": cluster.url}}],
                    "users": [{"name": "admin", "user": {"token": "secret"}}],
                    "contexts": [{"name": "kind", "context": {"cluster": "kind", "user": "admin"}}],
                    "current-context": "kind",
                }
            )
        )
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KNITFAB_NAMESPACE", "team-a")
        monkeypatch.setenv("KNITFAB_DATA_PVC", "team-a-data")
        monkeypatch.setenv("KNITFAB_DATA_SUBPATH", "knitfab")
        monkeypatch.setenv("KNITFAB_NODE_NAME", "node-7")
        cluster.claim("team-a-data", "ReadWriteOnce", namespace="team-a")
        runner = KubernetesRunner.from_environment(store.layout)
        job = started(runner)
        created = runner.batch.read_namespaced_job(job.worker, "team-a")
        runner.batch.api_client.close()
        assert created.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == "team-a-data"
        assert created.spec.template.spec.containers[0].volume_mounts[0].sub_path == "knitfab/data/in-1"
        assert cluster.emulator[kmock.action.CREATE][-1].headers["Authorization"] == "Bearer secret"
        assert created.spec.template.spec.affinity.node_affinity is not None  # pinned to node-7
        assert runner.node == "node-7"

    def test_in_a_pod_its_service_account_and_namespace(self, store, tmp_path, monkeypatch):
        for name, text in {"token": "secret", "ca.crt": "not checked until a request", "namespace": "team-b\n"}.items():
            (tmp_path / name).write_text(text)
        monkeypatch.setattr(kubernetes.config.incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
        monkeypatch.setattr(kubernetes.config.incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
        monkeypatch.setattr(knitfab.runners.k8s, "NAMESPACE_FILE", str(tmp_path / "namespace"))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
        for name in ("KNITFAB_NAMESPACE", "KNITFAB_DATA_PVC", "KNITFAB_DATA_SUBPATH", "KNITFAB_WORKER_PRIORITY_CLASS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("KNITFAB_NODE_NAME", "node-1")
        asked = []  # no API server at 10.96.0.1: the storage is TestStorage's
        monkeypatch.setattr(KubernetesRunner, "pin_to_storage", lambda self, node: asked.append(node))
        runner = KubernetesRunner.from_environment(store.layout)
        runner.batch.api_client.close()
        assert runner.batch.api_client.configuration.host == "https://10.96.0.1:443"
        assert (runner.namespace, runner.pvc, runner.data_root) == ("team-b", "knitfab-data", "")
        assert (runner.priority_class, asked) == ("knit-worker-priority", ["node-1"])

    def test_the_servers_flags_win_over_the_environment_and_leave_it_alone(self, store, tmp_path, monkeypatch):
        for name in ("token", "ca.crt"):
            (tmp_path / name).write_text("not checked until a request")
        monkeypatch.setattr(kubernetes.config.incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
        monkeypatch.setattr(kubernetes.config.incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
        monkeypatch.setenv("KNITFAB_NAMESPACE", "from-env")
        monkeypatch.setenv("KNITFAB_DATA_PVC", "env-data")
        monkeypatch.setattr(KubernetesRunner, "pin_to_storage", lambda self, node: None)
        given = {"KNITFAB_NAMESPACE": "from-flag", "KNITFAB_DATA_SUBPATH": "sub"}  # Config.kubernetes
        runner = KubernetesRunner.from_environment(store.layout, given)
        runner.batch.api_client.close()
        assert (runner.namespace, runner.pvc, runner.data_root) == ("from-flag", "env-data", "sub")
        assert os.environ["KNITFAB_NAMESPACE"] == "from-env" and "KNITFAB_DATA_SUBPATH" not in os.environ


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
97 22 0:52 / /var/lib/knitfab rw,relatime - nfs4 10.0.0.5:/export/knitfab rw,vers=4.1
98 22 8:16 / /var/lib/knitfab-db rw,relatime - ext4 /dev/sdb rw
"""


class TestStorage:
    def test_read_write_many_lets_workers_run_anywhere(self, cluster, runner):
        cluster.claim(PVC, "ReadWriteMany")
        runner.pin_to_storage("node-1")
        assert runner.node is None
        job = started(runner)
        assert "affinity" not in cluster.job(job.worker)["spec"]["template"]["spec"]

    def test_read_write_once_pins_every_worker_to_the_servers_node(self, cluster, runner, caplog):
        cluster.claim(PVC, "ReadWriteOnce")
        runner.pin_to_storage("node-1")
        assert "every worker runs on node node-1" in caplog.text
        job = started(runner)
        affinity = cluster.job(job.worker)["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]

    @pytest.mark.parametrize(
        ("modes", "node", "why"),
        [
            ("ReadWriteOnce", None, "set KNITFAB_NODE_NAME"),
            ("ReadWriteOncePod", "node-1", "workers cannot mount it"),
            ("ReadOnlyMany", "node-1", "workers cannot mount it"),
            (None, "node-1", "is not in namespace knitfab"),
        ],
    )
    def test_storage_that_cannot_work_is_refused(self, cluster, runner, modes, node, why):
        if modes:
            cluster.claim(PVC, modes)
        with pytest.raises(ConfigurationError, match=why):
            runner.pin_to_storage(node)

    def test_the_database_may_live_outside_the_data_directory(self, tmp_path):
        from knitfab.store.db import Store

        store = Store(tmp_path / "data", db=tmp_path / "db" / "knitfab.db")
        store.close()
        assert (tmp_path / "db" / "knitfab.db").exists() and not (tmp_path / "data" / "knitfab.db").exists()

    def test_the_database_on_nfs_is_refused_and_on_its_own_disk_is_not(self):
        assert filesystem_of(Path("/var/lib/knitfab/sub"), MOUNTINFO) == "nfs4"
        with pytest.raises(ConfigurationError, match="is on nfs4: SQLite needs a local disk"):
            refuse_network_database(Path("/var/lib/knitfab/knitfab.db"), MOUNTINFO)
        refuse_network_database(Path("/var/lib/knitfab-db/knitfab.db"), MOUNTINFO)
        assert filesystem_of(Path("/var/lib/knitfab-db"), MOUNTINFO) == "ext4"
