"""The Kubernetes runner: each run is a batch/v1 Job ``worker-run-<runId>`` in one namespace.

The Job (``job_manifest``) runs the plan image as container ``main`` once (``backoffLimit: 0``,
``restartPolicy: Never``), with ``command`` = entrypoint and ``args``. Its inputs and outputs are
sub-paths of the one data PVC that the server mounts as its data directory (ReadWriteMany when
workers may land on other nodes): an input is ``<data_root>/data/<knitId>`` (read-only), an output
``<data_root>/staging/<knitId>`` (read-write), so ``prepare`` and the moves into place after the run
stay plain file operations of the server, as with the local runner. (The server must be able to
read, and delete, what an image writes there as whatever user it runs as.)

* The handle ``start`` returns is the Job's name; ``status``, ``stop`` and ``cleanup`` find the
  Job by it, and its pod by label. Jobs have no time-to-live: one that ends while the server is
  down waits for it, and a restarted server simply carries on (``reconcile`` deletes strays).
* ``status``: a pod not yet running is *starting*; one that has a Warning event is failed with 255
  and ``(pod <pod>) [<reason>] <message>`` (at once for a hopeless reason, such as an image that
  cannot be pulled, else once the pod is ``stuck_after`` seconds old); the ``main`` container's
  end gives the exit code and ``(container main) <reason>``; a Job that is gone is 254 (and
  so is one that failed without a container's result, with the Job's reason).
* ``logs`` streams the pod's log; ``cleanup`` writes the whole of it into the log Data's file
  ``log`` (``stop`` saves what there is before it deletes a running Job), then deletes the Job.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import kubernetes
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from .runner import GONE, Job, RunnerError, WorkerState, WorkerStatus, empty_outputs
from .store import Layout

CONTAINER = "main"
VOLUME = "data"
RUN_LABEL = "knit/worker.runid"
WORKER_SELECTOR = "app.kubernetes.io/managed-by=knitfab,app.kubernetes.io/component=worker"
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# The kubelet's Warning reasons that waiting does not cure ("Failed": an image that could not be
# pulled, a container that could not be created). Others (FailedScheduling above all: an autoscaler
# may still bring a node) fail a pod only once it has waited ``stuck_after`` seconds.
HOPELESS = frozenset({"Failed", "InspectFailed", "ErrImageNeverPull", "FailedMount"})
# Why the main container may wait for ever, as its status says (events are best-effort).
CANNOT_START = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
)
STARTING = WorkerStatus(WorkerState.STARTING)
RUNNING = WorkerStatus(WorkerState.RUNNING)


# -- the Job ------------------------------------------------------------------------------------


def job_name(run_id: str) -> str:
    return f"worker-run-{run_id}"


def job_manifest(job: Job, namespace: str, pvc: str, data_root: str = "", priority_class: str | None = None) -> dict:
    """The batch/v1 Job of a run, as the plain dict that is sent to the API server."""
    labels = worker_labels(job)
    template = {"metadata": {"labels": labels}, "spec": pod_spec(job, pvc, data_root, priority_class)}
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
        RUN_LABEL: job.run_id,
        "knit/worker.run": job.run_id,
        "knit/worker.plan": job.plan_id,
    }


def pod_spec(job: Job, pvc: str, data_root: str = "", priority_class: str | None = None) -> dict:
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
    return spec | scheduling(job.on_node)


def main_container(job: Job, data_root: str = "") -> dict:
    mounts = [_mount(m.path, data_root, "data", m.knit_id) for m in job.inputs]
    mounts += [_mount(m.path, data_root, "staging", m.knit_id, writable=True) for m in job.outputs]
    container = {"name": CONTAINER, "image": job.image, "env": [{"name": "KNIT_RUN_ID", "value": job.run_id}]}
    container["env"] += [{"name": name, "value": value} for name, value in job.env.items()]  # from hooks.py
    if job.entrypoint:
        container["command"] = list(job.entrypoint)
    if job.args:
        container["args"] = list(job.args)
    if job.resources:  # requests = limits: what the plan asks for is what it gets, no more
        container["resources"] = {"limits": dict(job.resources), "requests": dict(job.resources)}
    return container | {"volumeMounts": mounts}


def _mount(path: str, data_root: str, folder: str, knit_id: str, writable: bool = False) -> dict:
    sub_path = posixpath.join(data_root.strip("/"), folder, knit_id)
    return {"name": VOLUME, "mountPath": path, "subPath": sub_path, "readOnly": not writable}


def scheduling(on_node: list[tuple[str, str, str]]) -> dict:
    """Tolerations and node affinity for the plan's ``on_node`` labels: *may* tolerates the
    NoSchedule taint ``key=value``; *prefer* and *must* tolerate PreferNoSchedule too, and prefer
    (weight 1) or require a node labelled so (several *must* values of one key: any of them)."""
    result = {}
    tolerations = _tolerations(on_node)
    if tolerations:
        result["tolerations"] = tolerations
    affinity = _node_affinity(on_node)
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


def _node_affinity(on_node: list[tuple[str, str, str]]) -> dict:
    affinity: dict = {}
    preferred = [{"weight": 1, "preference": _term({key: [value]})} for mode, key, value in on_node if mode == "prefer"]
    if preferred:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    required: dict[str, list[str]] = {}
    for mode, key, value in on_node:
        if mode == "must":
            required.setdefault(key, []).append(value)
    if required:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [_term(required)]}
    return affinity


def _term(values: dict[str, list[str]]) -> dict:
    """A node selector term: a node label of each key, with any of its values."""
    return {"matchExpressions": [{"key": key, "operator": "In", "values": v} for key, v in values.items()]}


# -- the runner ---------------------------------------------------------------------------------


class KubernetesRunner:
    """Runs each run as a Job; see the module docstring. ``capacity`` is None: the scheduler decides."""

    capacity = None

    def __init__(
        self,
        layout: Layout,
        api_client: ApiClient,
        namespace: str,
        pvc: str,
        data_root: str = "",
        stuck_after: float = 300,
        priority_class: str | None = None,
        timeout: float = 10,
        poll: float = 1.0,
    ):
        self.layout = layout
        self.namespace = namespace
        self.pvc = pvc
        self.data_root = data_root
        self.stuck_after = stuck_after
        self.priority_class = priority_class
        self.poll = poll
        self.batch = BatchV1Api(api_client)
        self.core = CoreV1Api(api_client)
        self._timeout = {"_request_timeout": timeout}

    @classmethod
    def from_environment(cls, layout: Layout, **options) -> KubernetesRunner:
        """In a pod, its service account and namespace; elsewhere the kubeconfig. ``KNITFAB_NAMESPACE``
        (default: the pod's namespace, else ``knitfab``), ``KNITFAB_DATA_PVC`` (``knitfab-data``),
        ``KNITFAB_DATA_SUBPATH`` (where the server's data directory is in that PVC, default its root)
        and ``KNITFAB_WORKER_PRIORITY_CLASS`` (none) say the rest."""
        config = kubernetes.client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=config)
        else:
            kubernetes.config.load_kube_config(client_configuration=config)
        env = os.environ.get
        return cls(
            layout, ApiClient(config), namespace=_namespace(), pvc=env("KNITFAB_DATA_PVC", "knitfab-data"),
            data_root=env("KNITFAB_DATA_SUBPATH", ""), priority_class=env("KNITFAB_WORKER_PRIORITY_CLASS"), **options,
        )  # fmt: skip

    # -- protocol -------------------------------------------------------------------------------

    def prepare(self, job: Job) -> None:
        empty_outputs(self.layout, job, mode=0o777)  # the image may run as any user

    def start(self, job: Job) -> str:
        manifest = job_manifest(job, self.namespace, self.pvc, self.data_root, self.priority_class)
        try:
            self.batch.create_namespaced_job(self.namespace, manifest, **self._timeout)
        except ApiException as e:
            if e.status == 409:
                return self._adopt(job)
            if e.status in (400, 422):
                raise RunnerError(f"the cluster rejects the worker of run {job.run_id}: {_api_message(e)}") from e
            raise
        return job_name(job.run_id)

    def status(self, job: Job) -> WorkerStatus:
        found = self._job(job)
        return GONE if found is None else self._status(job, found)

    def logs(self, job: Job, follow: bool = False) -> Iterator[bytes]:
        while follow and self.status(job).state == WorkerState.STARTING:
            time.sleep(self.poll)  # `run show --log -f` on a starting run: wait for something to show
        found = self._job(job)
        pod = self._pod(job, found) if found else None
        response = self._log(pod, follow) if pod else None
        if response is None:
            return
        with response:
            yield from response.stream(65536)

    def stop(self, job: Job) -> bool:
        found = self._job(job)
        if found is None:
            return True
        if self._status(job, found).state not in (WorkerState.STARTING, WorkerState.RUNNING):
            return True  # it has ended: the Job stays until cleanup, which saves its log
        if found.metadata.deletion_timestamp is None:
            self._save_log(job, found)
            self._delete(self._name(job), "Foreground")  # the Job goes once its pod has gone
        return False

    def cleanup(self, job: Job) -> None:
        found = self._job(job)
        if found is not None:
            self._save_log(job, found)
            self._delete(self._name(job), "Background")

    # -- after a restart ------------------------------------------------------------------------

    def find_workers(self) -> dict[str, str]:
        """``{runId: handle}`` of the worker Jobs on this runner's PVC, whatever their state."""
        jobs = self.batch.list_namespaced_job(self.namespace, label_selector=WORKER_SELECTOR, **self._timeout)
        return {j.metadata.labels[RUN_LABEL]: j.metadata.name for j in jobs.items if self._ours(j)}

    def reconcile(self, live: Collection[str]) -> list[str]:
        """Delete the worker Jobs of runs not in ``live``; the handles of the Jobs deleted.

        For the engine's start-up, with the runIds the store has ready, starting, running,
        completing or aborting: those find their Jobs again through ``job.worker`` (or, when ready,
        through ``start``, which takes over a Job already there); any other Job of this PVC is a
        stray, of a run that is gone or finished without its cleanup."""
        strays = {run_id: name for run_id, name in self.find_workers().items() if run_id not in live}
        for name in strays.values():
            self._delete(name, "Background")
        return sorted(strays.values())

    # -- reading the cluster --------------------------------------------------------------------

    def _name(self, job: Job) -> str:
        return job.worker or job_name(job.run_id)

    def _job(self, job: Job):
        try:
            return self.batch.read_namespaced_job(self._name(job), self.namespace, **self._timeout)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _pod(self, job: Job, found):
        """The newest pod of the Job ``found`` (a retried run's Job has the same name, but not
        the same uid, as the one before, whose pod may still linger)."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{RUN_LABEL}={job.run_id}", **self._timeout
        ).items
        uid = found.metadata.uid
        pods = [p for p in pods if not uid or any(o.uid == uid for o in p.metadata.owner_references or [])]
        return max(pods, key=lambda p: _created(p) or 0, default=None)

    def _status(self, job: Job, found) -> WorkerStatus:
        pod = self._pod(job, found)
        known = _container_state(pod) if pod else None
        if known:
            return known
        if _condition(found, "Complete"):
            return WorkerStatus(WorkerState.SUCCEEDED, 0, "")
        failed = _condition(found, "Failed")
        if failed:  # a pod gone without a result: evicted, deleted, past a deadline
            return _failed(254, f"job {found.metadata.name}", failed.reason, failed.message)
        return self._stuck("Pod", pod) if pod else self._stuck("Job", found)

    def _stuck(self, kind: str, obj) -> WorkerStatus:
        """Starting, unless ``obj`` has a Warning event that says it never will."""
        meta = obj.metadata
        selector = f"involvedObject.kind={kind},involvedObject.name={meta.name},type=Warning"
        selector += f",involvedObject.uid={meta.uid}" if meta.uid else ""  # not a namesake's
        events = self.core.list_namespaced_event(self.namespace, field_selector=selector, **self._timeout).items
        age = time.time() - (_created(obj) or time.time())
        for event in events:
            if event.type == "Warning" and (event.reason in HOPELESS or age >= self.stuck_after):
                return _failed(255, f"{kind.lower()} {meta.name}", event.reason, event.message)
        return STARTING

    def _ours(self, found) -> bool:
        volumes = found.spec.template.spec.volumes or []
        return any(v.persistent_volume_claim and v.persistent_volume_claim.claim_name == self.pvc for v in volumes)

    # -- changing the cluster -------------------------------------------------------------------

    def _adopt(self, job: Job) -> str:
        """The Job exists already: the worker of an earlier ``start`` whose handle was not stored,
        or, while it is being deleted, the last attempt's worker (then try again later)."""
        found = self._job(job)
        if found is not None and found.metadata.deletion_timestamp is not None:
            raise RuntimeError(f"the last worker of run {job.run_id} is still being deleted")
        return job_name(job.run_id)

    def _delete(self, name: str, propagation: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy=propagation, **self._timeout)
        except ApiException as e:
            if e.status != 404:
                raise

    def _log(self, pod, follow: bool):
        """The streaming response of the ``main`` container's log; None when there is none (yet)."""
        options = {} if follow else self._timeout  # following: quiet for as long as the program is
        try:
            return self.core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, container=CONTAINER, follow=follow, _preload_content=False, **options
            )
        except ApiException as e:
            if e.status in (400, 404):  # the container has not started, or the pod is gone
                return None
            raise

    def _save_log(self, job: Job, found) -> None:
        """Write the pod's log into the log Data; keep what is there when the pod has no log."""
        pod = self._pod(job, found) if job.log else None
        response = self._log(pod, follow=False) if pod else None
        if response is None:
            return
        path = self.layout.staging(job.log) / "log"
        partial = path.with_name("log.partial")
        with response, open(partial, "wb") as f:
            for chunk in response.stream(65536):
                f.write(chunk)
        os.replace(partial, path)


# -- helpers --------------------------------------------------------------------------------------


def _namespace() -> str:
    if os.environ.get("KNITFAB_NAMESPACE"):
        return os.environ["KNITFAB_NAMESPACE"]
    in_pod = Path(NAMESPACE_FILE)
    return in_pod.read_text().strip() if in_pod.exists() else "knitfab"


def _created(obj) -> float | None:
    created = obj.metadata.creation_timestamp
    return created.timestamp() if created else None


def _condition(found, kind: str):
    conditions = found.status.conditions if found.status else None
    return next((c for c in conditions or [] if c.type == kind and c.status == "True"), None)


def _container_state(pod) -> WorkerStatus | None:
    """What the ``main`` container says: it runs, it has ended, or it will never start."""
    statuses = pod.status.container_statuses if pod.status else None
    main = next((s for s in statuses or [] if s.name == CONTAINER), None)
    state = main.state if main else None
    if state is None:
        return None
    if state.terminated:
        return _exit(state.terminated)
    if state.waiting and state.waiting.reason in CANNOT_START:
        return _failed(255, f"pod {pod.metadata.name}", state.waiting.reason, state.waiting.message)
    return RUNNING if state.running else None


def _exit(ended) -> WorkerStatus:
    if ended.exit_code == 0:
        return WorkerStatus(WorkerState.SUCCEEDED, 0, "")
    return WorkerStatus(WorkerState.FAILED, ended.exit_code, f"(container {CONTAINER}) {ended.reason or 'Error'}")


def _failed(code: int, subject: str, reason: str | None, message: str | None) -> WorkerStatus:
    return WorkerStatus(WorkerState.FAILED, code, f"({subject}) [{reason}] {message or ''}")


def _api_message(e: ApiException) -> str:
    try:
        return json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}"
