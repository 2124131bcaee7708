"""manifests/knitfab.yaml and the server image: valid Kubernetes objects, least privilege, the ports and
probes the docs promise, a non-root server whose user matches the Dockerfile's. Offline and fast: the
schemas ship with kubernetes-validate."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifests" / "knitfab.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The oldest Kubernetes the manifest targets; kubernetes-validate >= 1.30 ships its schemas (1.25..).
KUBERNETES_VERSION = "1.30.0"
NAMESPACE = "knitfab"
DATA_DIR = "/var/lib/knitfab"
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

DOCS = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def _id(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _all(kind: str) -> list[dict]:
    return [doc for doc in DOCS if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict:
    found = [doc for doc in _all(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


SERVER = _one("Deployment", "knitfab")
REGISTRY = _one("Deployment", "knitfab-registry")


# -- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_document_is_a_valid_kubernetes_object(doc):
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    assert kv.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION.rpartition(".")[0]


def test_strict_validation_rejects_unknown_fields():
    """The check above would be worth little if typos (e.g. ``readinesProbe``) slipped through."""
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    broken = json.loads(json.dumps(SERVER))
    _container(broken)["readinesProbe"] = _container(broken)["readinessProbe"]
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)


def test_documents_are_the_expected_set_in_one_namespace():
    assert sorted(map(_id, DOCS)) == sorted(
        [
            "Namespace/knitfab",
            "ServiceAccount/knitfab",
            "Role/knitfab-runner",
            "RoleBinding/knitfab-runner",
            "PersistentVolumeClaim/knitfab-data",
            "Deployment/knitfab",
            "Service/knitfab",
            "PersistentVolumeClaim/knitfab-registry",
            "Deployment/knitfab-registry",
            "Service/knitfab-registry",
        ]
    )
    for doc in DOCS:
        if doc["kind"] not in CLUSTER_KINDS:
            assert doc["metadata"].get("namespace") == NAMESPACE, _id(doc)


# -- RBAC ----------------------------------------------------------------------------------------


def test_runner_role_is_least_privilege_in_its_own_namespace():
    assert not _all("ClusterRole") and not _all("ClusterRoleBinding")
    (role,) = _all("Role")
    granted = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs needed"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                assert key not in granted, f"{key} granted twice"
                granted[key] = sorted(rule["verbs"])
    assert granted == {
        ("batch", "jobs"): sorted(["create", "get", "list", "watch", "delete", "patch"]),
        ("", "pods"): sorted(["get", "list", "watch", "delete"]),
        ("", "pods/log"): ["get"],
        ("", "events"): sorted(["get", "list", "watch"]),
    }
    assert "*" not in json.dumps(role["rules"])


def test_role_is_bound_to_the_servers_service_account_only():
    (binding,) = _all("RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "knitfab-runner"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "knitfab", "namespace": NAMESPACE}]
    pod = SERVER["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "knitfab" and pod["automountServiceAccountToken"] is True
    assert _one("ServiceAccount", "knitfab")["automountServiceAccountToken"] is False
    assert REGISTRY["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# -- services ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "deployment", "node_port", "container_port"),
    [("knitfab", SERVER, 30803, 8080), ("knitfab-registry", REGISTRY, 30503, 5000)],
)
def test_node_ports_reach_their_pods(service, deployment, node_port, container_port):
    spec = _one("Service", service)["spec"]
    assert spec["type"] == "NodePort"
    (port,) = spec["ports"]
    assert port["nodePort"] == node_port
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= labels.items()
    named = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
    assert named.get(port["targetPort"], port["targetPort"]) == container_port


def test_service_selectors_pick_one_deployment_each():
    for service in _all("Service"):
        selector = service["spec"]["selector"].items()
        picked = [d for d in _all("Deployment") if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(picked) == 1, _id(service)


# -- the server ----------------------------------------------------------------------------------


def _args(container: dict) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_server_is_one_replica_replaced_by_recreate():
    assert SERVER["spec"]["replicas"] == 1
    assert SERVER["spec"]["strategy"] == {"type": "Recreate"}


def test_server_runs_knitfab_serve_with_the_kubernetes_runner():
    container = _container(SERVER)
    args = _args(container)
    assert args[:2] == ["knitfab", "serve"]
    assert _flag(args, "--runner") == "kubernetes"
    assert _flag(args, "--host") == "0.0.0.0"
    assert _flag(args, "--port") == "8080"
    assert _flag(args, "--data-dir") == DATA_DIR
    assert re.fullmatch(r"http://\$\(KNITFAB_NODE_IP\):30803/api", _flag(args, "--public-url"))
    assert container["image"] == "knitfab:latest" and container["imagePullPolicy"] == "IfNotPresent"


def test_server_probes_use_healthz_and_readyz():
    container = _container(SERVER)
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/readyz"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert named[container[probe]["httpGet"]["port"]] == 8080


def test_runner_environment_names_the_mounted_data_pvc():
    container = _container(SERVER)
    env = {e["name"]: e for e in container["env"]}
    assert env["KNITFAB_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["KNITFAB_DATA_SUBPATH"]["value"] == ""
    assert env["KNITFAB_NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    volumes = {v["name"]: v for v in SERVER["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    data = mounts[DATA_DIR]
    assert "subPath" not in data, "KNITFAB_DATA_SUBPATH is empty: the whole PVC is the data dir"
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == env["KNITFAB_DATA_PVC"]["value"] == "knitfab-data"
    assert _one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


@pytest.mark.parametrize("deployment", [SERVER, REGISTRY], ids=["server", "registry"])
def test_pods_are_locked_down(deployment):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0 and pod["securityContext"]["runAsGroup"] > 0
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(deployment)
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()


def test_registry_is_registry_2_on_its_own_volume():
    container = _container(REGISTRY)
    assert container["image"] == "registry:2"
    assert REGISTRY["spec"]["replicas"] == 1 and REGISTRY["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in REGISTRY["spec"]["template"]["spec"]["volumes"]}
    (store,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/registry"]
    assert volumes[store["name"]]["persistentVolumeClaim"]["claimName"] == "knitfab-registry"


# -- the image -----------------------------------------------------------------------------------


def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> arguments of each occurrence (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def test_dockerfile_user_is_the_manifests_user():
    instructions = _dockerfile()
    uid, _, gid = instructions["USER"][-1].partition(":")
    security = SERVER["spec"]["template"]["spec"]["securityContext"]
    assert (int(uid), int(gid)) == (security["runAsUser"], security["runAsGroup"])
    created = " ".join(instructions["RUN"])
    assert f"--uid {uid}" in created and f"--gid {gid}" in created


def test_dockerfile_runs_the_server():
    instructions = _dockerfile()
    assert instructions["FROM"] == ["python:3.11-slim"]
    assert json.loads(instructions["ENTRYPOINT"][-1]) == ["knitfab"]
    cmd = json.loads(instructions["CMD"][-1])
    assert cmd[:3] == ["serve", "--host", "0.0.0.0"]
    assert instructions["EXPOSE"] == ["8080"]
    assert any('pip install --no-cache-dir ".[k8s]"' in run for run in instructions["RUN"])


def test_dockerfile_copies_the_package_and_dockerignore_keeps_it():
    copied = " ".join(_dockerfile()["COPY"]).split()
    needed = ["setup.cfg", "pyproject.toml", "README.md", "knitfab.py", "knitfab/", "knit/"]
    assert set(needed) <= set(copied)
    patterns = [p for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for path in needed:
        assert not any(fnmatch.fnmatch(path.rstrip("/"), p) for p in patterns), path
    for local_state in (".venv", ".git", "knitfab-data"):
        assert local_state in patterns
