"""The Kubernetes objects of an install, rendered for one namespace (``knitfab install``,
``manifests/``). Plain dicts, validated strictly in the tests against Kubernetes 1.29 and the newest
schema.

What it makes, in the namespace (default ``knitfab``):

* the server ``knitfab serve --runner kubernetes`` (REST API, engine, SQLite and the image
  registry) in one pod, its API on NodePort 30803 and its registry on NodePort 30503;
* a ServiceAccount and a Role with only the verbs the runner uses;
* two volumes: ``knitfab-data`` (Data, staging, the registry's blobs), mounted by every worker,
  and ``knitfab-db`` (SQLite), ReadWriteOnce and only the server's: never on NFS;
* the cluster-wide PriorityClass ``knit-worker-priority`` of worker pods, which never preempts.

With ``rwx`` the data volume is ReadWriteMany (NFS or any RWX class) and workers run on any node;
otherwise it is ReadWriteOnce and the server pins every worker to its own node. With ``tls`` the
API and the registry serve HTTPS with the Secret ``knitfab-tls`` (the installer makes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import __version__

SERVER_UID = 0  # root with only CHOWN, DAC_OVERRIDE and FOWNER: it must read and delete what any worker wrote
CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
DATA_DIR = "/var/lib/knitfab"
DB_DIR = "/var/lib/knitfab-db"
TLS_DIR = "/etc/knitfab/tls"
TLS_SECRET = "knitfab-tls"
API_PORT, REGISTRY_PORT = 8080, 30503
PRIORITY_CLASS = "knit-worker-priority"


@dataclass
class Settings:
    namespace: str = "knitfab"
    storage_class: str | None = None
    rwx: bool = False
    tls: bool = False
    api_node_port: int = 30803
    registry_node_port: int = 30503
    image: str = "knitfab:latest"
    data_size: str = "20Gi"
    db_size: str = "1Gi"

    @classmethod
    def from_base(cls, base: int | None, **fields) -> Settings:
        """``--node-port-base N``: the API on N, the registry on N + 1 (two installs, no clash)."""
        ports = {"api_node_port": base, "registry_node_port": base + 1} if base else {}
        return cls(**ports, **fields)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def render(s: Settings) -> list[dict]:
    """Every object of the install, in the order they are applied."""
    return [
        namespace(s),
        priority_class(),
        _obj("v1", "ServiceAccount", s, "knitfab", automountServiceAccountToken=False),
        role(s),
        role_binding(s),
        claim(s, "knitfab-data", "ReadWriteMany" if s.rwx else "ReadWriteOnce", s.data_size, s.storage_class),
        claim(s, "knitfab-db", "ReadWriteOnce", s.db_size, None),
        deployment(s),
        service(s),
    ]


def labels(component: str = "server") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "knitfab",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "knitfab",
        "app.kubernetes.io/version": __version__,
    }


def _obj(api: str, kind: str, s: Settings | None, name: str, **rest) -> dict:
    meta = {"name": name, "labels": labels()}
    if s is not None:
        meta["namespace"] = s.namespace
    return {"apiVersion": api, "kind": kind, "metadata": meta, **rest}


def namespace(s: Settings) -> dict:
    ns = _obj("v1", "Namespace", None, s.namespace)
    # Worker pods run arbitrary plan images, often as root: "restricted" would reject them.
    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    return ns


def priority_class() -> dict:
    """Workers queue behind nothing and push nothing out: the default priority, never preempting."""
    description = "Knitfab workers: wait for room, never preempt other pods"
    return _obj(
        "scheduling.k8s.io/v1", "PriorityClass", None, PRIORITY_CLASS,
        value=0, globalDefault=False, preemptionPolicy="Never", description=description,
    )  # fmt: skip


# What knitfab/runners/k8s.py calls, and nothing more (tests/test_manifests.py checks it against the calls).
RUNNER_VERBS = {
    ("batch", "jobs"): ["create", "delete", "get", "list"],
    ("", "pods"): ["list"],
    ("", "pods/log"): ["get"],
    ("", "events"): ["list"],
    ("", "persistentvolumeclaims"): ["get"],
}


def role(s: Settings) -> dict:
    rules = [{"apiGroups": [g], "resources": [r], "verbs": v} for (g, r), v in RUNNER_VERBS.items()]
    return _obj("rbac.authorization.k8s.io/v1", "Role", s, "knitfab-runner", rules=rules)


def role_binding(s: Settings) -> dict:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "knitfab-runner"}
    subjects = [{"kind": "ServiceAccount", "name": "knitfab", "namespace": s.namespace}]
    return _obj("rbac.authorization.k8s.io/v1", "RoleBinding", s, "knitfab-runner", roleRef=ref, subjects=subjects)


def claim(s: Settings, name: str, mode: str, size: str, storage_class: str | None) -> dict:
    spec: dict = {"accessModes": [mode], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return _obj("v1", "PersistentVolumeClaim", s, name, spec=spec)


def deployment(s: Settings) -> dict:
    selector = {"app.kubernetes.io/name": "knitfab", "app.kubernetes.io/component": "server"}
    template = {"metadata": {"labels": labels()}, "spec": pod(s)}
    # One writer of the SQLite database: never two servers, not even during a rollout.
    spec = {"replicas": 1, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 3}
    spec |= {"selector": {"matchLabels": selector}, "template": template}
    return _obj("apps/v1", "Deployment", s, "knitfab", spec=spec)


def pod(s: Settings) -> dict:
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "knitfab-data"}},
        {"name": "db", "persistentVolumeClaim": {"claimName": "knitfab-db"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if s.tls:
        volumes.append({"name": "tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o400}})
    return {
        "serviceAccountName": "knitfab",
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        # SIGTERM: the server stops accepting, finishes requests in flight (up to 30 s) and the
        # engine's current stage, then exits 0. Runs keep running; the next server finds them again.
        "terminationGracePeriodSeconds": 90,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(s)],
        "volumes": volumes,
    }


def container(s: Settings) -> dict:
    mounts = [{"name": "data", "mountPath": DATA_DIR}, {"name": "db", "mountPath": DB_DIR}]
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    if s.tls:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    ports = [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}]
    ports.append({"name": "registry", "containerPort": REGISTRY_PORT, "protocol": "TCP"})
    return {
        "name": "knitfab",
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",  # built into the cluster (make image, docs/kubernetes.md), never pulled
        "command": ["knitfab"],
        "args": server_args(s),
        "env": server_env(),
        "ports": ports,
        **probes(s),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": {
            "runAsUser": SERVER_UID,
            "runAsGroup": SERVER_UID,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": CAPABILITIES},
        },
        "volumeMounts": mounts,
    }


def server_args(s: Settings) -> list[str]:
    args = ["serve", "--host", "0.0.0.0", "--port", str(API_PORT), "--data-dir", DATA_DIR]
    args += ["--db", f"{DB_DIR}/knitfab.db", "--runner", "kubernetes", "--registry-port", str(REGISTRY_PORT)]
    # apiRoot of the server's own handout: the node's address and the NodePort.
    args += ["--public-url", f"{s.scheme}://$(KNITFAB_NODE_IP):{s.api_node_port}/api"]
    if s.tls:
        args += ["--cert", f"{TLS_DIR}/tls.crt", "--key", f"{TLS_DIR}/tls.key"]
    return args


def server_env() -> list[dict]:
    def field(path: str) -> dict:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [
        {"name": "KNITFAB_NAMESPACE", **field("metadata.namespace")},
        {"name": "KNITFAB_DATA_PVC", "value": "knitfab-data"},
        {"name": "KNITFAB_DATA_SUBPATH", "value": ""},  # the PVC is mounted whole at --data-dir
        {"name": "KNITFAB_WORKER_PRIORITY_CLASS", "value": PRIORITY_CLASS},
        {"name": "KNITFAB_NODE_NAME", **field("spec.nodeName")},  # where workers of a RWO volume must run
        {"name": "KNITFAB_NODE_IP", **field("status.hostIP")},  # for --public-url
        {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def probes(s: Settings) -> dict:
    def get(path: str, **timing) -> dict:
        return {"httpGet": {"path": path, "port": "http", "scheme": s.scheme.upper()}, **timing}

    return {
        # Opening the database and recovering runs come before the API listens.
        "startupProbe": get("/api/healthz", periodSeconds=5, failureThreshold=60),
        "livenessProbe": get("/api/healthz", periodSeconds=10, timeoutSeconds=5, failureThreshold=6),
        # 503 while starting or stopping: no new requests are sent then.
        "readinessProbe": get("/api/readyz", periodSeconds=5, timeoutSeconds=3, failureThreshold=2),
    }


def service(s: Settings) -> dict:
    ports = [
        {"name": "http", "port": API_PORT, "targetPort": "http", "nodePort": s.api_node_port, "protocol": "TCP"},
        {
            "name": "registry", "port": REGISTRY_PORT, "targetPort": "registry", "nodePort": s.registry_node_port,
            "protocol": "TCP",
        },
    ]  # fmt: skip
    selector = {"app.kubernetes.io/name": "knitfab", "app.kubernetes.io/component": "server"}
    return _obj("v1", "Service", s, "knitfab", spec={"type": "NodePort", "selector": selector, "ports": ports})


HEADER = """\
# Knitfab in Python on Kubernetes{variant}. Generated by `make manifests` from knitfab/manifest.py:
# do not edit; `knitfab install` renders the same objects for any namespace, ports and storage.
#
#   kubectl apply -f {path}
#
# The server image knitfab:latest is built into the cluster first (docs/kubernetes.md):
# `minikube image build -t knitfab:latest .` (or `make image` and `minikube image load`).
"""


def to_yaml(docs: list[dict], path: str = "manifests/knitfab.yaml", variant: str = "") -> str:
    import yaml

    body = "".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in docs)
    return HEADER.format(path=path, variant=variant) + body


# The files in manifests/ (for `kubectl apply -f`), rendered by `make manifests`.
VARIANTS = {
    "manifests/knitfab.yaml": (Settings(), ""),
    "manifests/rwx/knitfab.yaml": (
        Settings(rwx=True, storage_class="nfs-csi"),
        ", ReadWriteMany variant: workers on any node (storage class nfs-csi, csi-driver-nfs)",
    ),
}


def write_variants(root: Path) -> None:
    for path, (settings, variant) in VARIANTS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(to_yaml(render(settings), path, variant))


if __name__ == "__main__":
    write_variants(Path.cwd())
