"""``knitfab install`` / ``knitfab uninstall`` (knitfab/install.py) through the real kubernetes client
against kmock's emulated API server: the objects applied, the wait for the rollout, the handout."""

from __future__ import annotations

import base64
import json
import threading

import kmock
import pytest
import yaml
from k8s_cluster import Cluster
from kmock._internal import parsing

from knitfab.__main__ import main
from knitfab.install import InstallError, apply, install
from knitfab.manifest import Settings, render

KINDS = [
    "v1/namespaces", "v1/nodes", "v1/secrets", "v1/services", "v1/serviceaccounts", "apps/v1/deployments",
    "rbac.authorization.k8s.io/v1/roles", "rbac.authorization.k8s.io/v1/rolebindings",
    "scheduling.k8s.io/v1/priorityclasses",
]  # fmt: skip
NODE_IP = "192.168.49.2"


def _parse_path(path: str, _parse=parsing.parse_path):
    """kmock reads ``/api/v1/namespaces[/NAME]`` as a namespace with no resource: it is a Namespace."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse(path)


@pytest.fixture
def cluster(monkeypatch):
    monkeypatch.setattr(parsing, "parse_path", _parse_path)
    c = Cluster()
    for kind in KINDS:
        c.emulator.resources[kmock.resource(kind)] = {}
    c.core.create_node(
        {"metadata": {"name": "minikube"}, "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}
    )
    yield c
    c.close()


@pytest.fixture
def kubeconfig(cluster, tmp_path):
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": cluster.url}}],
        "users": [{"name": "admin", "user": {"token": "secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "admin"}}],
    }  # fmt: skip
    path.write_text(json.dumps(config))
    return path


def roll_out(cluster, namespace: str):
    """The Deployment controller and kubelet: the server becomes available once it exists."""
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    apps, done = AppsV1Api(cluster.api), {"replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}

    def loop():
        while not cluster._done.wait(0.05):
            try:
                apps.patch_namespaced_deployment_status("knitfab", namespace, {"status": done})
                return
            except ApiException:
                pass

    threading.Thread(target=loop, daemon=True).start()


def objects(cluster) -> dict[str, dict]:
    found = {}
    for (resource, namespace, name), obj in cluster.emulator.objects.items():
        if not obj.deleted and resource.plural not in ("nodes",):
            found[f"{resource.plural}/{namespace or '-'}/{name}"] = obj.raw
    return found


def test_one_command_installs_waits_for_the_rollout_and_writes_the_handout(cluster, kubeconfig, tmp_path, capsys):
    roll_out(cluster, "team-a")
    settings = tmp_path / "settings"
    argv = ["install", "-n", "team-a", "--kubeconfig", str(kubeconfig), "--tls", "--settings", str(settings)]
    assert main([*argv, "--storage-class", "fast", "--node-port-base", "31000", "--wait", "10"]) == 0
    made = objects(cluster)
    assert {
        "namespaces/-/team-a", "priorityclasses/-/knit-worker-priority", "serviceaccounts/team-a/knitfab",
        "roles/team-a/knitfab-runner", "rolebindings/team-a/knitfab-runner",
        "persistentvolumeclaims/team-a/knitfab-data", "persistentvolumeclaims/team-a/knitfab-db",
        "deployments/team-a/knitfab", "services/team-a/knitfab",
        "secrets/team-a/knitfab-tls",
    } <= made.keys()  # fmt: skip
    assert made["persistentvolumeclaims/team-a/knitfab-data"]["spec"]["storageClassName"] == "fast"
    ports = {p["name"]: p["nodePort"] for p in made["services/team-a/knitfab"]["spec"]["ports"]}
    assert ports == {"http": 31000, "registry": 31001}

    profile = yaml.safe_load((settings / "handout" / "knitprofile").read_text())
    assert profile["apiRoot"] == f"https://{NODE_IP}:31000/api"
    ca = (settings / "handout" / "docker" / "certs.d" / f"{NODE_IP}:31001" / "ca.crt").read_bytes()
    assert base64.b64decode(profile["cert"]["ca"]) == ca == (settings / "certs" / "ca.crt").read_bytes()
    secret = made["secrets/team-a/knitfab-tls"]["data"]
    assert base64.b64decode(secret["ca.crt"]) == ca
    assert (settings / "certs" / "server.key").stat().st_mode & 0o077 == 0
    assert "knit init" in capsys.readouterr().out
    _check_certificate(base64.b64decode(secret["tls.crt"]), ca)


def _check_certificate(cert_pem: bytes, ca_pem: bytes):
    from cryptography import x509

    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert NODE_IP in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert "knitfab.team-a.svc" in names.get_values_for_type(x509.DNSName)


def test_installing_again_updates_and_keeps_the_volumes(cluster, tmp_path):
    settings = Settings(namespace="team-b")
    roll_out(cluster, "team-b")
    install(cluster.api, settings, tmp_path, wait=10, poll=0.05)
    results = {
        f"{d['kind']}/{d['metadata']['name']}": apply(cluster.api, d)
        for d in render(Settings(namespace="team-b", image="knitfab:v2"))
    }
    assert results["PersistentVolumeClaim/knitfab-data"] == results["PriorityClass/knit-worker-priority"] == "kept"
    assert results["Deployment/knitfab"] == "configured"
    (container,) = objects(cluster)["deployments/team-b/knitfab"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "knitfab:v2"
    profile = yaml.safe_load((tmp_path / "handout" / "knitprofile").read_text())
    assert profile == {"apiRoot": f"http://{NODE_IP}:30803/api", "cert": {}}


def test_a_server_that_never_rolls_out_is_an_error_that_says_why(cluster, tmp_path):
    pod = {
        "metadata": {"name": "knitfab-x", "labels": {"app.kubernetes.io/component": "server"}},
        "spec": {"containers": [{"name": "knitfab", "image": "knitfab:latest"}]},
    }
    cluster.core.create_namespaced_pod("knitfab", pod)
    waiting = {"name": "knitfab", "image": "knitfab:latest", "imageID": "", "ready": False, "restartCount": 0}
    waiting["state"] = {"waiting": {"reason": "ErrImageNeverPull", "message": "image knitfab:latest is not present"}}
    cluster.core.patch_namespaced_pod_status("knitfab-x", "knitfab", {"status": {"containerStatuses": [waiting]}})
    with pytest.raises(
        InstallError, match="ErrImageNeverPull: image knitfab:latest is not present.*docs/kubernetes.md"
    ):
        install(cluster.api, Settings(), tmp_path, wait=0.2, poll=0.05)


def test_uninstall_keeps_the_volumes_and_hard_deletes_them(cluster, kubeconfig, tmp_path, capsys):
    roll_out(cluster, "knitfab")
    install(cluster.api, Settings(), tmp_path, wait=10, poll=0.05)
    worker = {
        "metadata": {
            "name": "worker-run-1",
            "labels": {"app.kubernetes.io/managed-by": "knitfab", "app.kubernetes.io/component": "worker"},
        },
        "spec": {"template": {"spec": {"containers": []}}},
    }
    cluster.batch.create_namespaced_job("knitfab", worker)
    assert main(["uninstall", "--kubeconfig", str(kubeconfig)]) == 0
    left = objects(cluster)
    assert "deployments/knitfab/knitfab" not in left and "jobs/knitfab/worker-run-1" not in left
    assert {"persistentvolumeclaims/knitfab/knitfab-data", "persistentvolumeclaims/knitfab/knitfab-db"} <= left.keys()
    assert "are kept" in capsys.readouterr().out
    assert main(["uninstall", "--kubeconfig", str(kubeconfig), "--hard"]) == 0
    left = objects(cluster)
    assert not [key for key in left if key.startswith("persistentvolumeclaims/") or key == "namespaces/-/knitfab"]
    assert "priorityclasses/-/knit-worker-priority" in left  # shared by every install in the cluster


def test_dry_run_prints_the_manifest_and_touches_nothing(cluster, capsys):
    assert main(["install", "--dry-run", "-n", "team-c", "--rwx"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert docs == render(Settings(namespace="team-c", rwx=True))
    assert not objects(cluster)
