"""The install's Kubernetes objects (knitfab/manifest.py, manifests/) and the server image: every
variant valid for Kubernetes 1.29 and the newest schema, strictly and offline; least privilege; the
ports, volumes and probes the docs promise; the files in manifests/ exactly what the code renders."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from schemas import K8S_VERSIONS

from knitfab import __version__
from knitfab.__main__ import _parser
from knitfab.manifest import RUNNER_VERBS, VARIANTS, Settings, render, to_yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
CLUSTER_KINDS = {"Namespace", "PriorityClass"}
RENDERED = {
    "default": Settings(),
    "rwx": Settings(rwx=True, storage_class="nfs-csi"),
    "tls": Settings(tls=True),
    "another-namespace": Settings.from_base(31000, namespace="team-b", storage_class="fast"),
}


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _container(docs: list[dict]) -> dict:
    (container,) = _one(docs, "Deployment", "knitfab")["spec"]["template"]["spec"]["containers"]
    return container


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


DEFAULT = render(Settings())


# -- schema and files ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", RENDERED)
def test_every_variant_is_valid_for_the_oldest_and_newest_kubernetes(variant, version):
    for doc in render(RENDERED[variant]):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_unknown_fields():
    """The check above would be worth little if typos (e.g. ``readinesProbe``) slipped through."""
    broken = json.loads(json.dumps(_one(DEFAULT, "Deployment", "knitfab")))
    (container,) = broken["spec"]["template"]["spec"]["containers"]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("path", VARIANTS)
def test_the_files_in_manifests_are_what_the_code_renders(path):
    settings, variant = VARIANTS[path]
    assert (ROOT / path).read_text() == to_yaml(render(settings), path, variant), "run `make manifests`"
    assert [doc for doc in yaml.safe_load_all((ROOT / path).read_text()) if doc] == render(settings)


def test_the_objects_of_an_install_in_one_namespace():
    rendered = render(RENDERED["another-namespace"])
    assert sorted(f"{d['kind']}/{d['metadata']['name']}" for d in rendered) == sorted(
        [
            "Namespace/team-b",
            "PriorityClass/knit-worker-priority",
            "ServiceAccount/knitfab",
            "Role/knitfab-runner",
            "RoleBinding/knitfab-runner",
            "PersistentVolumeClaim/knitfab-data",
            "PersistentVolumeClaim/knitfab-db",
            "Deployment/knitfab",
            "Service/knitfab",
        ]
    )
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == __version__
        if doc["kind"] not in CLUSTER_KINDS:
            assert doc["metadata"]["namespace"] == "team-b"
    assert _one(rendered, "RoleBinding", "knitfab-runner")["subjects"][0]["namespace"] == "team-b"


# -- RBAC and priority -------------------------------------------------------------------------------


def test_the_runner_role_grants_only_the_verbs_it_uses_in_its_namespace():
    role = _one(DEFAULT, "Role", "knitfab-runner")
    granted = {
        (g, r): sorted(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert granted == {key: sorted(verbs) for key, verbs in RUNNER_VERBS.items()}
    assert "*" not in json.dumps(role["rules"])
    assert not [d for d in DEFAULT if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    pod = _one(DEFAULT, "Deployment", "knitfab")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "knitfab" and pod["automountServiceAccountToken"] is True
    assert _one(DEFAULT, "ServiceAccount", "knitfab")["automountServiceAccountToken"] is False


def test_workers_get_a_priority_class_that_never_preempts():
    priority = _one(DEFAULT, "PriorityClass", "knit-worker-priority")
    assert (priority["preemptionPolicy"], priority["globalDefault"], priority["value"]) == ("Never", False, 0)
    assert _env(_container(DEFAULT))["KNITFAB_WORKER_PRIORITY_CLASS"] == "knit-worker-priority"


# -- storage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "mode", "storage_class"), [("default", "ReadWriteOnce", None), ("rwx", "ReadWriteMany", "nfs-csi")]
)
def test_data_volume_and_sqlite_on_a_read_write_once_volume_of_its_own(variant, mode, storage_class):
    docs = render(RENDERED[variant])
    data, db = _one(docs, "PersistentVolumeClaim", "knitfab-data"), _one(docs, "PersistentVolumeClaim", "knitfab-db")
    assert data["spec"]["accessModes"] == [mode] and data["spec"].get("storageClassName") == storage_class
    assert db["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in db["spec"]
    container = _container(docs)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _one(docs, "Deployment", "knitfab")["spec"]["template"]["spec"]["volumes"]}
    db_file = Path(_flag(container["args"], "--db"))
    assert volumes[mounts[str(db_file.parent)]]["persistentVolumeClaim"]["claimName"] == "knitfab-db"
    data_dir = _flag(container["args"], "--data-dir")
    assert volumes[mounts[data_dir]]["persistentVolumeClaim"]["claimName"] == "knitfab-data"
    env = _env(container)
    assert env["KNITFAB_DATA_PVC"] == "knitfab-data" and env["KNITFAB_DATA_SUBPATH"] == ""
    assert env["KNITFAB_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}  # pins RWO workers
    assert env["KNITFAB_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


# -- the server ------------------------------------------------------------------------------------


def test_the_server_runs_knitfab_serve_with_the_kubernetes_runner_and_its_registry():
    container = _container(DEFAULT)
    args = container["args"]
    assert container["command"] == ["knitfab"] and args[0] == "serve"
    assert (_flag(args, "--runner"), _flag(args, "--host"), _flag(args, "--port")) == ("kubernetes", "0.0.0.0", "8080")
    assert _flag(args, "--registry-port") == "30503"
    assert _flag(args, "--public-url") == "http://$(KNITFAB_NODE_IP):30803/api"
    assert container["image"] == "knitfab:latest" and container["imagePullPolicy"] == "IfNotPresent"
    deployment = _one(DEFAULT, "Deployment", "knitfab")["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}


def test_the_manifests_args_are_knitfab_serves_flags():
    """Parsed by the real ``knitfab serve`` parser: every flag is one it knows."""
    args, unknown = _parser().parse_known_args(_container(render(RENDERED["tls"]))["args"])
    assert unknown == []
    assert args.registry_port == 30503
    assert (args.db, args.cert) == (Path("/var/lib/knitfab-db/knitfab.db"), Path("/etc/knitfab/tls/tls.crt"))


@pytest.mark.parametrize("variant", ["default", "another-namespace"])
def test_node_ports_reach_the_api_and_the_registry(variant):
    settings = RENDERED[variant]
    docs = render(settings)
    spec = _one(docs, "Service", "knitfab")["spec"]
    container = _container(docs)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    ports = {p["name"]: (p["nodePort"], named[p["targetPort"]]) for p in spec["ports"]}
    assert ports == {"http": (settings.api_node_port, 8080), "registry": (settings.registry_node_port, 30503)}
    labels = _one(docs, "Deployment", "knitfab")["spec"]["template"]["metadata"]["labels"]
    assert spec["type"] == "NodePort" and spec["selector"].items() <= labels.items()


def test_two_installs_use_different_node_ports():
    first, second = Settings(), Settings.from_base(31000, namespace="team-b")
    assert (second.api_node_port, second.registry_node_port) == (31000, 31001)
    assert not {first.api_node_port, first.registry_node_port} & {second.api_node_port, second.registry_node_port}


def test_probes_use_healthz_and_readyz_over_the_servers_scheme():
    for variant, scheme in (("default", "HTTP"), ("tls", "HTTPS")):
        container = _container(render(RENDERED[variant]))
        assert container["livenessProbe"]["httpGet"]["path"] == "/api/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/api/readyz"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["scheme"] == scheme
            assert container[probe]["httpGet"]["port"] == "http"


def test_tls_serves_the_certificate_of_the_installers_secret():
    docs = render(RENDERED["tls"])
    container = _container(docs)
    assert _flag(container["args"], "--public-url") == "https://$(KNITFAB_NODE_IP):30803/api"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"]["readOnly"] is True
    assert _flag(container["args"], "--cert") == mounts["tls"]["mountPath"] + "/tls.crt"
    assert _flag(container["args"], "--key") == mounts["tls"]["mountPath"] + "/tls.key"
    volumes = {v["name"]: v for v in _one(docs, "Deployment", "knitfab")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "knitfab-tls"


def test_the_server_is_root_with_only_the_capabilities_to_own_what_workers_write():
    """knitfab/ownership.py; tests/test_ownership.py shows these three are enough, and needed."""
    pod = _one(DEFAULT, "Deployment", "knitfab")["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(DEFAULT)["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}
    assert (context["allowPrivilegeEscalation"], context["readOnlyRootFilesystem"]) == (False, True)
    assert context["runAsUser"] == 0
    namespace = _one(DEFAULT, "Namespace", "knitfab")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "baseline", "baseline allows exactly these three"
    resources = _container(DEFAULT)["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()


# -- the image -------------------------------------------------------------------------------------


def _dockerfile() -> dict[str, list[str]]:
    """Instruction -> arguments of each occurrence (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def test_the_image_installs_pinned_wheels_without_an_index():
    instructions = _dockerfile()
    assert instructions["FROM"] == ["python:3.11-slim-bookworm"]
    assert "PIP_NO_INDEX=1" in " ".join(instructions["ENV"])
    assert any("--find-links /tmp/wheels -r /tmp/requirements.txt" in run for run in instructions["RUN"])
    pins = [line for line in (ROOT / "requirements" / "server.txt").read_text().splitlines() if line and line[0] != "#"]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][\w.]*", pin) for pin in pins), pins
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    needed = setup["options"]["install_requires"].split() + setup["options.extras_require"]["k8s"].split()
    names = {pin.split("==")[0].lower() for pin in pins}
    assert {re.split("[<>=]", n)[0].lower() for n in needed if n[0].isalpha()} <= names


def test_the_image_runs_the_server_on_the_manifests_paths():
    instructions = _dockerfile()
    assert json.loads(instructions["ENTRYPOINT"][-1]) == ["knitfab"]
    cmd = json.loads(instructions["CMD"][-1])
    args = _container(DEFAULT)["args"]
    assert cmd[:3] == ["serve", "--host", "0.0.0.0"]
    assert (_flag(cmd, "--data-dir"), _flag(cmd, "--db")) == (_flag(args, "--data-dir"), _flag(args, "--db"))
    assert instructions["EXPOSE"] == ["8080 30503"]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "build" in ignored and "!build/wheels" in ignored and ".venv" in ignored
