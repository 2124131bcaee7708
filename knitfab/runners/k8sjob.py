"""The batch/v1 Job of a run, as the plain dict sent to the API server (``job_manifest``): the
plan's image as container ``main``, its inputs and outputs as sub-paths of the data PVC, and the
scheduling its ``on_node`` labels and the data volume ask for. No API calls: ``k8s`` makes them.
"""

from __future__ import annotations

import posixpath

from .. import __version__
from .k8sstatus import CONTAINER
from .protocol import Job

VOLUME = "data"
RUN_LABEL = "knit/worker.runid"


def job_name(run_id: str) -> str:
    return f"worker-run-{run_id}"


def job_manifest(
    job: Job, namespace: str, pvc: str, data_root: str = "", priority_class: str | None = None, node: str | None = None
) -> dict:
    """The batch/v1 Job of a run, as the plain dict that is sent to the API server; ``node``: the
    node every worker must run on (a ReadWriteOnce data volume), None for any node."""
    labels = worker_labels(job)
    template = {"metadata": {"labels": labels}, "spec": pod_spec(job, pvc, data_root, priority_class, node)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(job.run_id), "namespace": namespace, "labels": labels},
        "spec": {"backoffLimit": 0, "template": template},
    }


def worker_labels(job: Job) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "worker",
        "app.kubernetes.io/instance": job_name(job.run_id),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "knitfab",
        "app.kubernetes.io/managed-by": "knitfab",
        "app.kubernetes.io/version": __version__,
        RUN_LABEL: job.run_id,
        "knit/worker.run": job.run_id,
        "knit/worker.plan": job.plan_id,
    }


def pod_spec(
    job: Job, pvc: str, data_root: str = "", priority_class: str | None = None, node: str | None = None
) -> dict:
    spec = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": bool(job.service_account),
        "containers": [main_container(job, data_root)],
        "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": pvc}}],
    }
    if job.service_account:
        spec["serviceAccountName"] = job.service_account
    if priority_class:
        spec["priorityClassName"] = priority_class
    return spec | scheduling(job.on_node, node)


def main_container(job: Job, data_root: str = "") -> dict:
    mounts = [_mount(m.path, data_root, "data", m.knit_id) for m in job.inputs]
    mounts += [_mount(m.path, data_root, "staging", m.knit_id, writable=True) for m in job.outputs]
    container = {"name": CONTAINER, "image": job.image, "env": worker_env(job)}
    if job.entrypoint:
        container["command"] = list(job.entrypoint)
    if job.args:
        container["args"] = list(job.args)
    if job.resources:  # requests = limits: what the plan asks for is what it gets, no more
        container["resources"] = {"limits": dict(job.resources), "requests": dict(job.resources)}
    return container | {"volumeMounts": mounts}


def worker_env(job: Job) -> list[dict]:
    """The ``main`` container's environment variables."""
    env = [{"name": "KNIT_RUN_ID", "value": job.run_id}]
    return env + [{"name": name, "value": value} for name, value in job.env.items()]  # from hooks.py


def _mount(path: str, data_root: str, folder: str, knit_id: str, writable: bool = False) -> dict:
    sub_path = posixpath.join(data_root.strip("/"), folder, knit_id)
    return {"name": VOLUME, "mountPath": path, "subPath": sub_path, "readOnly": not writable}


def scheduling(on_node: list[tuple[str, str, str]], node: str | None = None) -> dict:
    """Tolerations and node affinity for the plan's ``on_node`` labels: *may* tolerates the
    NoSchedule taint ``key=value``; *prefer* and *must* tolerate PreferNoSchedule too, and prefer
    (weight 1) or require a node labelled so (several *must* values of one key: any of them).
    ``node``, when given, is required too: the node by its name (``metadata.name``, which the
    ``kubernetes.io/hostname`` label need not equal)."""
    result = {}
    tolerations = _tolerations(on_node)
    if tolerations:
        result["tolerations"] = tolerations
    affinity = _node_affinity(on_node, node)
    if affinity:
        result["affinity"] = {"nodeAffinity": affinity}
    return result


def _tolerations(on_node: list[tuple[str, str, str]]) -> list[dict]:
    tolerations = []
    for mode, key, value in on_node:
        for effect in ("NoSchedule",) if mode == "may" else ("NoSchedule", "PreferNoSchedule"):
            toleration = {"key": key, "operator": "Equal", "value": value, "effect": effect}
            if toleration not in tolerations:
                tolerations.append(toleration)
    return tolerations


def _node_affinity(on_node: list[tuple[str, str, str]], node: str | None) -> dict:
    affinity: dict = {}
    preferred = [{"weight": 1, "preference": _term({key: [value]})} for mode, key, value in on_node if mode == "prefer"]
    if preferred:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    required: dict[str, list[str]] = {}
    for mode, key, value in on_node:
        if mode == "must":
            required.setdefault(key, []).append(value)
    term = _term(required) if required else {}
    if node:  # in the same term: the node's labels AND its name
        term["matchFields"] = [{"key": "metadata.name", "operator": "In", "values": [node]}]
    if term:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
    return affinity


def _term(values: dict[str, list[str]]) -> dict:
    """A node selector term: a node label of each key, with any of its values."""
    return {"matchExpressions": [{"key": key, "operator": "In", "values": v} for key, v in values.items()]}
