"""``knitfab install`` and ``knitfab uninstall``: one command each, as Knitfab's ``installer.sh``.

``install`` renders the objects of ``knitfab.manifest`` for a namespace, applies them through the
Kubernetes API (create, or patch what is there; volumes and the shared PriorityClass are left as
they are), waits for the server to roll out and writes the settings directory:

    <settings>/certs/        the CA and the server's certificate and key (with --tls; kept, reused)
    <settings>/handout/      what users get: knitprofile (for `knit init`), README.md, and with
                             --tls docker/certs.d/<node>:<registry port>/ca.crt

``uninstall`` deletes the server, its workers and its RBAC; ``--hard`` also the data and database
volumes (every Data, plan, run and pushed image) and the namespace.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import time
from pathlib import Path

import kubernetes
import yaml
from kubernetes.client import AppsV1Api, BatchV1Api, CoreV1Api, RbacAuthorizationV1Api, SchedulingV1Api
from kubernetes.client.exceptions import ApiException

from .errors import KnitfabError
from .manifest import TLS_SECRET, Settings, render
from .runners.k8s import WORKER_SELECTOR

# kind -> the typed API and the suffix of its create_/patch_/delete_ methods
APIS = {
    "Namespace": (CoreV1Api, "namespace"),
    "PriorityClass": (SchedulingV1Api, "priority_class"),
    "ServiceAccount": (CoreV1Api, "namespaced_service_account"),
    "Secret": (CoreV1Api, "namespaced_secret"),
    "Role": (RbacAuthorizationV1Api, "namespaced_role"),
    "RoleBinding": (RbacAuthorizationV1Api, "namespaced_role_binding"),
    "PersistentVolumeClaim": (CoreV1Api, "namespaced_persistent_volume_claim"),
    "Deployment": (AppsV1Api, "namespaced_deployment"),
    "Service": (CoreV1Api, "namespaced_service"),
}
KEPT = {"PersistentVolumeClaim", "PriorityClass"}  # immutable specs, or shared by every install
SERVER_OBJECTS = [
    ("Deployment", "knitfab"), ("Service", "knitfab"), ("RoleBinding", "knitfab-runner"), ("Role", "knitfab-runner"),
    ("ServiceAccount", "knitfab"), ("Secret", TLS_SECRET),
]  # fmt: skip
VOLUMES = [("PersistentVolumeClaim", "knitfab-data"), ("PersistentVolumeClaim", "knitfab-db")]


class InstallError(KnitfabError):
    reason = "knitfab install failed"


def api_client(kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)


def install(
    api, s: Settings, settings_dir: Path, node_ip: str | None = None, wait: float = 300, poll: float = 2
) -> Path:
    """Install or upgrade Knitfab in ``s.namespace``; returns the handout directory."""
    ips = node_addresses(api)
    node_ip = node_ip or (ips[0] if ips else None)
    if not node_ip:
        raise InstallError("no node has an address: give one with --node-ip")
    ca = None
    docs = render(s)
    if s.tls:
        ca, cert, key = certificates(settings_dir / "certs", [node_ip, *ips], s.namespace)
        docs.insert(1, tls_secret(s, ca, cert, key))
    for doc in docs:
        apply(api, doc)
    wait_for_rollout(api, s.namespace, "knitfab", wait, poll)
    return write_handout(settings_dir / "handout", s, node_ip, ca)


def apply(api, doc: dict) -> str:
    """Create ``doc``, or patch the object of its name; ``created``, ``configured`` or ``kept``."""
    kind, scope = doc["kind"], [doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []
    cls, suffix = APIS[kind]
    typed = cls(api)
    try:
        getattr(typed, f"create_{suffix}")(*scope, doc)
        return "created"
    except ApiException as e:
        if e.status != 409:
            raise InstallError(f"{kind} {doc['metadata']['name']}: {e.status} {e.reason}") from e
    if kind in KEPT:
        return "kept"
    getattr(typed, f"patch_{suffix}")(doc["metadata"]["name"], *scope, doc)
    return "configured"


def wait_for_rollout(api, namespace: str, name: str, timeout: float, poll: float) -> None:
    apps, deadline = AppsV1Api(api), time.monotonic() + timeout
    while not rolled_out(apps.read_namespaced_deployment(name, namespace)):
        if time.monotonic() > deadline:
            raise InstallError(f"deployment {name} is not ready after {timeout:.0f} s: {pod_problems(api, namespace)}")
        time.sleep(poll)


def rolled_out(deployment) -> bool:
    status, want = deployment.status, deployment.spec.replicas or 1
    if status is None or (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return False
    return (status.updated_replicas or 0) >= want and (status.available_replicas or 0) >= want


def pod_problems(api, namespace: str) -> str:
    """Why the server's pod is not ready, as its container says (ImagePullBackOff: see the docs)."""
    pods = CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=server").items
    waiting = [s.state.waiting for p in pods for s in (p.status.container_statuses or []) if s.state.waiting]
    said = "; ".join(f"{w.reason}: {w.message or ''}" for w in waiting) or "no reason given yet"
    return f"{said} (kubectl -n {namespace} describe pod; the image is built into the cluster: docs/kubernetes.md)"


def node_addresses(api) -> list[str]:
    """The nodes' InternalIP and ExternalIP addresses, ready nodes first."""
    addresses = []
    for node in CoreV1Api(api).list_node().items:
        for address in (node.status.addresses if node.status else None) or []:
            if address.type in ("InternalIP", "ExternalIP") and address.address not in addresses:
                addresses.append(address.address)
    return addresses


def write_handout(folder: Path, s: Settings, node_ip: str, ca: bytes | None) -> Path:
    """``knitprofile`` (spec §7.2), the registry's CA where docker looks for it, and a README."""
    folder.mkdir(parents=True, exist_ok=True)
    profile = {"apiRoot": f"{s.scheme}://{node_ip}:{s.api_node_port}/api", "cert": {}}
    registry = f"{node_ip}:{s.registry_node_port}"
    if ca:
        profile["cert"] = {"ca": base64.b64encode(ca).decode()}
        certs_d = folder / "docker" / "certs.d" / registry
        certs_d.mkdir(parents=True, exist_ok=True)
        (certs_d / "ca.crt").write_bytes(ca)
    (folder / "knitprofile").write_text(yaml.safe_dump(profile, sort_keys=False))
    (folder / "README.md").write_text(
        README.format(registry=registry, port=s.registry_node_port, api=profile["apiRoot"])
    )
    return folder


README = """# Knitfab handout

* `knit init ./knitprofile` in your project directory: the API is {api}.
* Push plan images to `{registry}` and name them `localhost:{port}/IMAGE:TAG` in plans.
* With TLS, copy `docker/certs.d/{registry}/` to `/etc/docker/certs.d/` so docker trusts the registry.
"""


def uninstall(api, namespace: str, hard: bool = False) -> list[str]:
    """Delete the install in ``namespace``; what was deleted, as ``Kind/name``."""
    gone = []
    for job in BatchV1Api(api).list_namespaced_job(namespace, label_selector=WORKER_SELECTOR).items:
        BatchV1Api(api).delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
        gone.append(f"Job/{job.metadata.name}")
    for kind, name in SERVER_OBJECTS + (VOLUMES if hard else []):
        if _delete(api, kind, name, namespace):
            gone.append(f"{kind}/{name}")
    if hard and _delete(api, "Namespace", namespace, None):
        gone.append(f"Namespace/{namespace}")
    return gone


def _delete(api, kind: str, name: str, namespace: str | None) -> bool:
    cls, suffix = APIS[kind]
    try:
        getattr(cls(api), f"delete_{suffix}")(name, *([namespace] if namespace else []))
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise InstallError(f"{kind} {name}: {e.status} {e.reason}") from e


# -- TLS ------------------------------------------------------------------------------------------


def tls_secret(s: Settings, ca: bytes, cert: bytes, key: bytes) -> dict:
    data = {"tls.crt": cert, "tls.key": key, "ca.crt": ca}
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    meta = {"name": TLS_SECRET, "namespace": s.namespace}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls", "data": encoded}


def certificates(folder: Path, ips: list[str], namespace: str) -> tuple[bytes, bytes, bytes]:
    """The CA, the server certificate and its key (PEM) in ``folder``: made once, then reused."""
    paths = [folder / name for name in ("ca.crt", "server.crt", "server.key")]
    if not all(p.exists() for p in paths):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        for path, pem in zip(paths, make_certificates(ips, namespace), strict=True):
            path.write_bytes(pem)
            path.chmod(0o600)
    ca, cert, key = (p.read_bytes() for p in paths)
    return ca, cert, key


def make_certificates(ips: list[str], namespace: str) -> tuple[bytes, bytes, bytes]:
    """A self-signed CA and a server certificate for the nodes' addresses and in-cluster names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer, key, signer, days: int, ca: bool, names=()):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
        builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now)
        builder = builder.not_valid_after(now + datetime.timedelta(days=days))
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("knitfab CA", None, ca_key, ca_key, 3650, True)
    dns = ["localhost", "knitfab", f"knitfab.{namespace}", f"knitfab.{namespace}.svc"]
    addresses = {ipaddress.ip_address(ip) for ip in [*ips, "127.0.0.1"]}
    names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ip) for ip in sorted(addresses, key=str)]
    cert = build("knitfab", ca.subject, key, ca_key, 825, False, names)
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem
