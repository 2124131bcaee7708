"""The Kubernetes runner: each run is a batch/v1 Job ``worker-run-<runId>`` in one namespace.

The Job (``k8sjob.job_manifest``) runs the plan image as container ``main`` once (``backoffLimit: 0``,
``restartPolicy: Never``, PriorityClass ``knit-worker-priority``), with ``command`` = entrypoint
and ``args``. Its inputs and outputs are sub-paths of the one data PVC that the server mounts as
its data directory: an input is ``<data_root>/data/<knitId>`` (read-only), an output
``<data_root>/staging/<knitId>`` (read-write), so ``prepare`` and the moves into place after the
run stay plain file operations of the server, as with the local runner.

* Storage decides where workers run (``pin_to_storage``): with a ReadWriteMany data PVC, on any
  node; with ReadWriteOnce, on the server's own node (required node affinity on its name), since
  a worker elsewhere would see another, empty disk or fail to attach the volume. Other modes, a
  missing PVC, or ReadWriteOnce without the server's node name are refused at start.
* The API is read once per ``max_age`` seconds for all runs together (``refresh``: Jobs and pods
  by label, Warning events only while some worker waits), in a background thread in the server,
  so the engine's ``status`` calls read memory: 2–3 requests per tick whatever the number of runs.
* ``status`` follows ``k8sstatus``: unschedulable pods and Jobs that cannot make their pod wait,
  with the complaint as the run's message; only what can never start fails.
* Logs are followed into the log Data while the worker runs (``k8slog``); ``logs`` reads that
  file, and ``cleanup`` fetches what the follower missed, trying for at most ``Deadlines.log``
  seconds, so a failing log endpoint never holds a run in *completing*.
* The handle ``start`` returns is the Job's name. Jobs have no time-to-live: one that ends while
  the server is down waits for it, and a restarted server carries on (``reconcile`` deletes strays).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from ..errors import ConfigurationError
from ..store.layout import Layout
from .k8sjob import RUN_LABEL, job_manifest, job_name
from .k8slog import WorkerLogs
from .k8sstatus import CONTAINER, Deadlines, main_state, worker_status
from .k8sstorage import refuse_network_database, worker_node
from .protocol import GONE, Job, Runner, RunnerError, WorkerState, WorkerStatus, empty_outputs

log = logging.getLogger("knitfab.k8s")
WORKER_SELECTOR = "app.kubernetes.io/managed-by=knitfab,app.kubernetes.io/component=worker"
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
PRIORITY_CLASS = "knit-worker-priority"
DEADLINES = Deadlines()
ACTIVE = (WorkerState.STARTING, WorkerState.RUNNING)


# -- the runner ---------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The workers as one round of list requests saw them."""

    taken: float = float("-inf")  # time.monotonic()
    jobs: dict = field(default_factory=dict)  # name -> V1Job
    pods: dict = field(default_factory=dict)  # runId -> [V1Pod]
    warnings: dict = field(default_factory=dict)  # uid of the pod or Job -> [CoreV1Event]


class KubernetesRunner(Runner):
    """Runs each run as a Job; see the module docstring. ``capacity`` is None: the scheduler decides.
    ``clock`` (wall time) measures the deadlines; tests pass their own."""

    capacity = None

    def __init__(
        self,
        layout: Layout,
        api_client: ApiClient,
        namespace: str,
        pvc: str,
        data_root: str = "",
        priority_class: str | None = PRIORITY_CLASS,
        node: str | None = None,
        deadlines: Deadlines = DEADLINES,
        timeout: float = 10,
        poll: float = 1.0,
        max_age: float = 1.0,
        clock=time.time,
    ):
        self.layout = layout
        self.namespace = namespace
        self.pvc = pvc
        self.data_root = data_root
        self.priority_class = priority_class
        self.node = node
        self.deadlines = deadlines
        self.poll = poll
        self.max_age = max_age
        self.clock = clock
        self.batch = BatchV1Api(api_client)
        self.core = CoreV1Api(api_client)
        self._timeout = {"_request_timeout": timeout}
        self._snapshot = Snapshot()
        self._logs = WorkerLogs(self, layout, clock, poll, deadlines.log)

    @classmethod
    def from_environment(cls, layout: Layout, settings: Mapping[str, str] | None = None, **options) -> KubernetesRunner:
        """In a pod, its service account and namespace; elsewhere the kubeconfig. ``KNITFAB_NAMESPACE``
        (default: the pod's namespace, else ``knitfab``), ``KNITFAB_DATA_PVC`` (``knitfab-data``),
        ``KNITFAB_DATA_SUBPATH`` (where the server's data directory is in that PVC, default its root),
        ``KNITFAB_WORKER_PRIORITY_CLASS`` (``knit-worker-priority``; empty for none) and
        ``KNITFAB_NODE_NAME`` (the server's node, from the downward API) say the rest. Refuses
        (``ConfigurationError``) a database on a network filesystem and storage that cannot work.
        ``settings`` (the server's ``Config.kubernetes``, from its flags) win over the environment."""
        refuse_network_database(layout.db)
        config = kubernetes.client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=config)
        else:
            kubernetes.config.load_kube_config(client_configuration=config)
        env = _settings(settings or {})
        runner = cls(
            layout, ApiClient(config), namespace=_namespace(env), pvc=env("KNITFAB_DATA_PVC", "knitfab-data"),
            data_root=env("KNITFAB_DATA_SUBPATH", ""),
            priority_class=env("KNITFAB_WORKER_PRIORITY_CLASS", PRIORITY_CLASS) or None, **options,
        )  # fmt: skip
        runner.pin_to_storage(env("KNITFAB_NODE_NAME"))
        return runner

    def pin_to_storage(self, node: str | None) -> None:
        """Where workers may run, from the data PVC's access modes (see the module docstring)."""
        self.node = worker_node(self.pvc, self._access_modes(), node)

    # -- protocol -------------------------------------------------------------------------------

    def prepare(self, job: Job) -> None:
        empty_outputs(self.layout, job, mode=0o777)  # the image may run as any user
        self._logs.forget(job)  # a new attempt's log starts afresh

    def start(self, job: Job) -> str:
        manifest = job_manifest(job, self.namespace, self.pvc, self.data_root, self.priority_class, self.node)
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
        snapshot = self._fresh()
        found = snapshot.jobs.get(self._name(job)) or self._job(job)  # not listed: made since, or gone
        if found is None:
            return GONE
        pod = _newest(snapshot.pods.get(job.run_id, []), found)
        warnings = snapshot.warnings.get((pod or found).metadata.uid, [])
        status = worker_status(found, pod, warnings, self.clock(), self.deadlines)
        state = main_state(pod) if pod is not None else None
        if state is not None and (state.running or state.terminated):
            self._logs.follow(job, pod.metadata.name)
        return status

    def logs(self, job: Job, follow: bool = False) -> Iterator[bytes]:
        """The log as the follower has written it so far; with ``follow``, until the worker ends."""
        if not job.log:
            return
        if not follow:
            self._logs.settle(job)
        try:
            f = open(self.layout.current(job.log) / "log", "rb")
        except FileNotFoundError:  # moved into data/ in between: the run has just finished
            f = open(self.layout.data(job.log) / "log", "rb")
        with f:
            while True:
                ended = not follow or self._logs.ended(job, self.status)
                while chunk := f.read(65536):
                    yield chunk
                if ended:
                    return
                time.sleep(self.poll)

    def stop(self, job: Job) -> bool:
        if self.status(job).state not in ACTIVE:
            return True  # ended or gone: the Job stays until cleanup, which completes its log
        found = self._job(job)
        if found is None:
            return True
        if found.metadata.deletion_timestamp is None:
            self._delete(self._name(job), "Foreground")  # the Job goes once its pod has gone
        return False

    def cleanup(self, job: Job) -> None:
        found = self._job(job)
        if found is not None:
            if job.log:
                self._logs.complete(job, _newest(self._pods(job), found))
            self._delete(self._name(job), "Background")
        self._logs.forget(job)

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

    def refresh(self) -> Snapshot:
        """List every worker's Job and pod (and, while one waits, the Warning events): the few
        requests that ``status`` then answers from, for all runs."""
        selector = {"label_selector": WORKER_SELECTOR, **self._timeout}
        taken = time.monotonic()
        jobs = {j.metadata.name: j for j in self.batch.list_namespaced_job(self.namespace, **selector).items}
        pods: dict[str, list] = {}
        for pod in self.core.list_namespaced_pod(self.namespace, **selector).items:
            pods.setdefault((pod.metadata.labels or {}).get(RUN_LABEL), []).append(pod)
        warnings: dict[str, list] = {}
        if any(_waiting(j, pods.get(j.metadata.labels.get(RUN_LABEL), [])) for j in jobs.values()):
            listed = self.core.list_namespaced_event(self.namespace, field_selector="type=Warning", **self._timeout)
            for event in listed.items:
                warnings.setdefault(event.involved_object.uid, []).append(event)
        self._snapshot = Snapshot(taken, jobs, pods, warnings)
        return self._snapshot

    def refresh_in_background(self, stop: threading.Event) -> threading.Thread:
        """Keep the snapshot fresh from a thread of its own, so ``status`` never waits for the API."""

        def loop():
            while not stop.wait(self.max_age):
                try:
                    self.refresh()
                except Exception as e:  # the API server is away: the engine's status calls retry it
                    log.warning("cannot list the workers: %s", e)

        thread = threading.Thread(target=loop, name="knitfab-k8s-refresh", daemon=True)
        thread.start()
        return thread

    def _fresh(self) -> Snapshot:
        """The snapshot, refreshed here only when the background refresh is late (or not running)."""
        snapshot = self._snapshot
        return snapshot if time.monotonic() - snapshot.taken < 2 * self.max_age else self.refresh()

    def _access_modes(self) -> list[str]:
        try:
            claim = self.core.read_namespaced_persistent_volume_claim(self.pvc, self.namespace, **self._timeout)
        except ApiException as e:
            if e.status == 404:
                raise ConfigurationError(f"the data volume {self.pvc} is not in namespace {self.namespace}") from e
            raise
        return (claim.status.access_modes if claim.status else None) or claim.spec.access_modes or []

    def _name(self, job: Job) -> str:
        return job.worker or job_name(job.run_id)

    def _job(self, job: Job):
        try:
            return self.batch.read_namespaced_job(self._name(job), self.namespace, **self._timeout)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def pods_listed(self, run_id: str) -> list:
        """The pods of a run in the last snapshot (for the log followers: no API call)."""
        return self._snapshot.pods.get(run_id, [])

    def open_log(self, pod: str, since: int | None, follow: bool):
        """The streaming response of the ``main`` container's log; None when the pod is gone.
        Following, a quiet program may keep the stream silent: the read timeout then just
        reconnects from the last line."""
        timeout = {"_request_timeout": (10, 300)} if follow else self._timeout
        options = {"since_seconds": since} if since else {}
        try:
            return self.core.read_namespaced_pod_log(
                pod, self.namespace, container=CONTAINER, follow=follow, timestamps=True, _preload_content=False,
                **options, **timeout,
            )  # fmt: skip
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _pods(self, job: Job) -> list:
        selector = f"{RUN_LABEL}={job.run_id}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector, **self._timeout).items

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


# -- helpers --------------------------------------------------------------------------------------


def _settings(given: Mapping[str, str]) -> Callable[..., str | None]:
    """A setting by its variable's name: the server's flag, else the pod's environment."""
    return lambda name, default=None: given[name] if name in given else os.environ.get(name, default)


def _namespace(env: Callable[..., str | None]) -> str:
    if env("KNITFAB_NAMESPACE"):
        return env("KNITFAB_NAMESPACE")
    in_pod = Path(NAMESPACE_FILE)
    return in_pod.read_text().strip() if in_pod.exists() else "knitfab"


def _newest(pods: list, found):
    """The newest pod of the Job ``found`` (a retried run's Job has the same name, but not the
    same uid, as the one before, whose pod may still linger)."""
    uid = found.metadata.uid
    pods = [p for p in pods if not uid or any(o.uid == uid for o in p.metadata.owner_references or [])]
    return max(pods, key=lambda p: p.metadata.creation_timestamp.timestamp(), default=None)


def _waiting(found, pods: list) -> bool:
    """Whether a Job has no pod whose ``main`` container has started (its events then matter)."""
    if found.status and found.status.conditions:
        return False
    states = [main_state(p) for p in pods]
    return not any(s and (s.running or s.terminated) for s in states)


def _api_message(e: ApiException) -> str:
    try:
        return json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}"
