"""The Kubernetes runner (knitfab/runners/k8s.py) with no cluster.

Every Job it makes is validated offline against a pinned Kubernetes API schema (kubernetes-validate,
strict). The runner itself is driven through the real ``kubernetes`` client against kmock's emulated
API server, where nothing moves unless the test moves it: the ``Cluster`` helper patches Job and pod
statuses, adds events and pod logs, and for the runner contract plays a Job controller and a kubelet
that run the contract's fake programs.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import kmock
import kubernetes
import kubernetes_validate
import pytest
from helpers import wait_for
from kubernetes.client import ApiClient, BatchV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from runner_contract import RunnerContract
from schemas import K8S_VERSIONS

import knitfab.runners.k8s
from knitfab.errors import ConfigurationError
from knitfab.runners.k8s import KubernetesRunner, job_manifest, job_name
from knitfab.runners.k8sstorage import filesystem_of, refuse_network_database
from knitfab.runners.protocol import Job, Mount, RunnerError, WorkerState

NS = "knitfab"
PVC = "knitfab-data"
PODS, JOBS, EVENTS = kmock.resource("v1/pods"), kmock.resource("batch/v1/jobs"), kmock.resource("v1/events")
PVCS = kmock.resource("v1/persistentvolumeclaims")
RUNNER_AGENT = "knitfab-runner-under-test"


# -- the Jobs -------------------------------------------------------------------------------------


def a_job(**fields) -> Job:
    return Job(
        **{
            "run_id": str(uuid.uuid4()),
            "plan_id": str(uuid.uuid4()),
            "image": "registry.example.com:5000/train:v1",
            "entrypoint": ["python", "-u", "main.py"],
            "args": ["--epochs", "3"],
            "inputs": [Mount("/in/dataset", "in-1"), Mount("/in/model", "in-2")],
            "outputs": [Mount("/out/model", "out-1")],
            "log": "log-1",
            "resources": {"cpu": "1", "memory": "1Gi"},
            **fields,
        }
    )


def validated(manifest: dict) -> dict:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    return manifest


def _as_tuple(status):
    return status.state, status.code, status.message


def pod_of(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]


class TestJobManifest:
    def test_a_plain_plan(self):
        job = a_job()
        manifest = validated(job_manifest(job, NS, PVC))
        assert manifest["metadata"]["name"] == f"worker-run-{job.run_id}"
        assert manifest["metadata"]["namespace"] == NS
        assert manifest["spec"]["backoffLimit"] == 0
        pod = pod_of(manifest)
        assert (pod["restartPolicy"], pod["enableServiceLinks"], pod["automountServiceAccountToken"]) == (
            "Never",
            False,
            False,
        )
        assert "serviceAccountName" not in pod
        assert "tolerations" not in pod and "affinity" not in pod
        (main,) = pod["containers"]
        assert (main["name"], main["image"]) == ("main", "registry.example.com:5000/train:v1")
        assert (main["command"], main["args"]) == (["python", "-u", "main.py"], ["--epochs", "3"])
        assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": PVC}}]

    def test_inputs_are_read_only_and_outputs_writable_sub_paths_of_the_data_pvc(self):
        mounts = pod_of(validated(job_manifest(a_job(), NS, PVC)))["containers"][0]["volumeMounts"]
        assert mounts == [
            {"name": "data", "mountPath": "/in/dataset", "subPath": "data/in-1", "readOnly": True},
            {"name": "data", "mountPath": "/in/model", "subPath": "data/in-2", "readOnly": True},
            {"name": "data", "mountPath": "/out/model", "subPath": "staging/out-1", "readOnly": False},
        ]

    def test_the_data_directory_may_be_below_the_root_of_the_pvc(self):
        mounts = pod_of(validated(job_manifest(a_job(), NS, PVC, data_root="/srv/knitfab/")))["containers"][0]
        assert [m["subPath"] for m in mounts["volumeMounts"]] == [
            "srv/knitfab/data/in-1",
            "srv/knitfab/data/in-2",
            "srv/knitfab/staging/out-1",
        ]

    def test_the_image_entrypoint_and_cmd_stay_when_the_plan_has_none(self):
        main = pod_of(validated(job_manifest(a_job(entrypoint=[], args=[]), NS, PVC)))["containers"][0]
        assert "command" not in main and "args" not in main

    def test_resources_are_limits_and_requests(self):
        resources = {"cpu": "2500m", "memory": "8Gi", "nvidia.com/gpu": "1"}
        main = pod_of(validated(job_manifest(a_job(resources=resources), NS, PVC)))["containers"][0]
        assert main["resources"] == {"limits": resources, "requests": resources}

    def test_on_node_gives_tolerations_and_node_affinity(self):
        on_node = [
            ("may", "vram", "large"),
            ("prefer", "accelerator", "gpu"),
            ("must", "zone", "a"),
            ("must", "zone", "b"),
            ("must", "disk", "ssd"),
        ]
        pod = pod_of(validated(job_manifest(a_job(on_node=on_node), NS, PVC)))

        def tolerate(key, value, effect):
            return {"key": key, "operator": "Equal", "value": value, "effect": effect}

        def label_in(key, *values):
            return {"key": key, "operator": "In", "values": list(values)}

        assert pod["tolerations"] == [
            tolerate("vram", "large", "NoSchedule"),
            tolerate("accelerator", "gpu", "NoSchedule"),
            tolerate("accelerator", "gpu", "PreferNoSchedule"),
            tolerate("zone", "a", "NoSchedule"),
            tolerate("zone", "a", "PreferNoSchedule"),
            tolerate("zone", "b", "NoSchedule"),
            tolerate("zone", "b", "PreferNoSchedule"),
            tolerate("disk", "ssd", "NoSchedule"),
            tolerate("disk", "ssd", "PreferNoSchedule"),
        ]
        affinity = pod["affinity"]["nodeAffinity"]
        assert set(affinity) == {
            "preferredDuringSchedulingIgnoredDuringExecution",
            "requiredDuringSchedulingIgnoredDuringExecution",
        }
        assert affinity["preferredDuringSchedulingIgnoredDuringExecution"] == [
            {"weight": 1, "preference": {"matchExpressions": [label_in("accelerator", "gpu")]}}
        ]
        assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {
            "nodeSelectorTerms": [{"matchExpressions": [label_in("zone", "a", "b"), label_in("disk", "ssd")]}]
        }

    def test_a_service_account_and_its_token_only_when_the_plan_has_one(self):
        pod = pod_of(validated(job_manifest(a_job(service_account="trainer"), NS, PVC)))
        assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("trainer", True)

    def test_a_priority_class_when_the_operator_sets_one(self):
        pod = pod_of(validated(job_manifest(a_job(), NS, PVC, priority_class="knit-worker-priority")))
        assert pod["priorityClassName"] == "knit-worker-priority"

    def test_workers_of_a_read_write_once_volume_run_on_the_servers_node(self):
        pod = pod_of(validated(job_manifest(a_job(), NS, PVC, node="minikube-m02")))
        assert pod["affinity"]["nodeAffinity"] == {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["minikube-m02"]}]}
                ]
            }
        }

    def test_the_servers_node_and_the_plans_must_labels_are_both_required(self):
        on_node = [("must", "accelerator", "gpu")]
        pod = pod_of(validated(job_manifest(a_job(on_node=on_node), NS, PVC, node="node-1")))
        (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term == {
            "matchExpressions": [{"key": "accelerator", "operator": "In", "values": ["gpu"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}],
        }

    def test_labels_name_the_run_and_the_plan(self):
        job = a_job()
        manifest = validated(job_manifest(job, NS, PVC))
        labels = manifest["metadata"]["labels"]
        assert labels["knit/worker.runid"] == labels["knit/worker.run"] == job.run_id
        assert labels["knit/worker.plan"] == job.plan_id
        assert labels["app.kubernetes.io/managed-by"] == "knitfab"
        assert labels["app.kubernetes.io/component"] == "worker"
        assert labels["app.kubernetes.io/version"] == knitfab.__version__
        assert manifest["spec"]["template"]["metadata"]["labels"] == labels

    def test_the_validation_is_strict(self):
        manifest = job_manifest(a_job(), NS, PVC)
        pod_of(manifest)["containers"][0]["commands"] = ["typo"]
        with pytest.raises(kubernetes_validate.ValidationError):
            validated(manifest)


# -- an API server ---------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selected(obj: dict, params: dict) -> bool:
    """Whether ``obj`` passes the equality-based label and field selectors of a list request."""
    labels = obj.get("metadata", {}).get("labels") or {}
    wanted = [s.split("=", 1) for s in params.get("labelSelector", "").split(",") if s]
    fields = [s.split("=", 1) for s in params.get("fieldSelector", "").split(",") if s]
    return all(labels.get(k) == v for k, v in wanted) and all(_field(obj, k) == v for k, v in fields)


def _field(obj: dict, path: str):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with what the runner relies on and it leaves out: uids and creation times,
    label and field selectors, Foreground deletion (a finalizer, until the test removes it) and
    pod logs (``pod_logs``, streamed while the pod's ``main`` container has not ended)."""

    def __attrs_post_init__(self):
        super().__attrs_post_init__()
        self.pod_logs: dict[str, list[tuple[int, bytes]]] = {}  # pod -> (ns since the epoch, line)
        self.log_errors: list[int] = []  # statuses the next log requests fail with, one each
        self.cut_streams = False  # followed logs break off after what is there
        self.closing = False
        for resource in (PODS, JOBS, EVENTS, PVCS):
            self.resources[resource] = {}
        self[lambda request: request.subresource == "log"] << self._serve_log

    async def _handle(self, request):
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
        key = (request.resource, request.namespace, request.name)
        if request.action == kmock.action.DELETE and request.params.get("propagationPolicy") == "Foreground":
            if key in self.objects and not self.objects[key].deleted:
                self.objects[key].patch({"metadata": {"finalizers": ["foregroundDeletion"]}})
        return await super()._handle(request)

    async def _serve_list(self, request):
        listed = await super()._serve_list(request)
        return listed | {"items": [obj for obj in listed["items"] if _selected(obj, request.params)]}

    async def _serve_log(self, request):
        key = (PODS, request.namespace, request.name)
        if self.log_errors:
            status = self.log_errors.pop(0)
            raise kmock.KubernetesError(status, "TooManyRequests" if status == 429 else "InternalError", "injected")
        if key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        if request.name not in self.pod_logs:
            raise kmock.KubernetesError(400, "BadRequest", f'container "main" in pod "{request.name}" is waiting')
        since = int(request.params.get("sinceSeconds") or 0)
        render = partial(
            _log_lines, cutoff=time.time_ns() - since * 10**9 if since else 0, stamps=_true(request, "timestamps")
        )
        if not _true(request, "follow"):
            return render(self.pod_logs[request.name])
        return self._follow(key, render)

    async def _follow(self, key, render):
        yield b""  # the headers, at once
        sent = 0
        while True:
            lines = self.pod_logs[key[2]]
            if len(lines) > sent:
                chunk, sent = render(lines[sent:]), len(lines)
                yield chunk
            elif self.cut_streams or self.closing or self.objects[key].deleted or _terminated(self.objects[key].raw):
                return
            else:
                await asyncio.sleep(0.01)


def _true(request, param: str) -> bool:
    return request.params.get(param, "").lower() in ("1", "t", "true")  # as Go parses a bool


def _log_lines(lines: list[tuple[int, bytes]], cutoff: int, stamps: bool) -> bytes:
    return b"".join((_rfc3339(ns) if stamps else b"") + text for ns, text in lines if ns >= cutoff)


def _rfc3339(ns: int) -> bytes:
    """As the kubelet writes timestamps: RFC 3339 with nanoseconds, trailing zeros trimmed."""
    seconds = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{ns % 10**9:09d}".rstrip("0")
    return f"{seconds}{'.' + fraction if fraction else ''}Z ".encode()


def _terminated(pod: dict) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return "terminated" in statuses[0].get("state", {})


def _container() -> dict:
    return {"name": "main", "image": "example.com/image:v1", "imageID": "", "ready": False, "restartCount": 0}


class Cluster:
    """kmock's emulator serving on a local port from a thread of its own, and the hands that move
    Jobs and pods there (no controller runs unless ``play()`` starts the test's own)."""

    def __init__(self):
        self.emulator = Emulator()
        self._ready = threading.Event()
        self._server = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._server.start()
        assert self._ready.wait(10), "the emulator did not start"
        self.api = self.client()
        self.batch, self.core = BatchV1Api(self.api), CoreV1Api(self.api)
        self._clients: list[ApiClient] = []
        self._runners: list[KubernetesRunner] = []
        self._playing: threading.Thread | None = None
        self._done = threading.Event()

    async def _serve(self):
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def client(self) -> ApiClient:
        return ApiClient(Configuration(host=self.url))

    def runner(self, layout, **options) -> KubernetesRunner:
        """A runner that lists afresh for every status (``max_age=0``) unless told otherwise."""
        client = self.client()
        client.user_agent = RUNNER_AGENT  # tells the runner's requests from the test's own
        self._clients.append(client)
        defaults = {"namespace": NS, "pvc": PVC, "poll": 0.02, "max_age": 0}
        runner = KubernetesRunner(layout, client, **defaults | options)
        self._runners.append(runner)
        return runner

    def close(self):
        self._done.set()
        self.emulator.closing = True
        for runner in self._runners:
            for follower in list(runner._logs.followers.values()):
                follower.stop()
                follower.join(5)
        if self._playing:
            self._playing.join(10)
        for client in [self.api, *self._clients]:
            client.close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._server.join(10)

    # -- reading ------------------------------------------------------------------------------------

    def list(self, api, what: str, **selectors) -> list[dict]:
        response = getattr(api, f"list_namespaced_{what}")(NS, _preload_content=False, **selectors)
        return json.loads(response.data)["items"]

    def claim(self, name: str, mode: str, namespace: str = NS):
        """A bound PersistentVolumeClaim of one access mode."""
        spec = {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}
        body = {"metadata": {"name": name}, "spec": spec, "status": {"phase": "Bound", "accessModes": [mode]}}
        self.core.create_namespaced_persistent_volume_claim(namespace, body)

    def job(self, name: str) -> dict | None:
        return next((j for j in self.list(self.batch, "job") if j["metadata"]["name"] == name), None)

    def pods(self, job: dict) -> list[dict]:
        uid = job["metadata"]["uid"]
        return [p for p in self.list(self.core, "pod") if p["metadata"]["ownerReferences"][0]["uid"] == uid]

    # -- what the Job controller does ---------------------------------------------------------------

    def create_pod(self, name: str, job: dict | None = None) -> str:
        job = job or self.job(name)
        meta, template = job["metadata"], job["spec"]["template"]
        labels = template["metadata"]["labels"] | {"job-name": name, "controller-uid": meta["uid"]}
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"], "controller": True}
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        pod = {"metadata": {"name": pod_name, "labels": labels, "ownerReferences": [owner]}, "spec": template["spec"]}
        self.core.create_namespaced_pod(NS, pod | {"status": {"phase": "Pending"}})
        return pod_name

    def end_job(self, name: str, condition: str, reason: str = "", message: str = ""):
        counts = {"succeeded": 1} if condition == "Complete" else {"failed": 1}
        cond = {"type": condition, "status": "True", "reason": reason, "message": message}
        self.batch.patch_namespaced_job_status(name, NS, {"status": counts | {"conditions": [cond]}})

    def collect(self, job: dict):
        """The garbage collector: a Job deleted in the foreground goes once its pods have gone."""
        for pod in self.pods(job):
            self.core.delete_namespaced_pod(pod["metadata"]["name"], NS)
        self.batch.patch_namespaced_job(job["metadata"]["name"], NS, {"metadata": {"finalizers": []}})

    # -- what the kubelet does ------------------------------------------------------------------------

    def schedule(self, pod: str, at: str | None = None):
        """The scheduler binds the pod to a node (``at``: when, default now)."""
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": at or _now()}
        self.core.patch_namespaced_pod_status(pod, NS, {"status": {"conditions": [scheduled]}})

    def run(self, pod: str, log: str = ""):
        self.emulator.pod_logs[pod] = []
        self.write_log(pod, log)
        running = _container() | {"ready": True, "state": {"running": {"startedAt": _now()}}}
        self.core.patch_namespaced_pod_status(pod, NS, {"status": {"phase": "Running", "containerStatuses": [running]}})

    def write_log(self, pod: str, text: str):
        """Lines of the program's output, each with the time it was written (as the kubelet keeps it)."""
        lines = self.emulator.pod_logs[pod]
        for line in text.splitlines(keepends=True):
            lines.append((max(time.time_ns(), lines[-1][0] + 1 if lines else 0), line.encode()))

    def terminate(self, pod: str, code: int, reason: str):
        ended = {"exitCode": code, "reason": reason, "startedAt": _now(), "finishedAt": _now()}
        status = {"phase": "Succeeded" if code == 0 else "Failed"}
        status["containerStatuses"] = [_container() | {"state": {"terminated": ended}}]
        self.core.patch_namespaced_pod_status(pod, NS, {"status": status})

    def event(self, kind: str, name: str, reason: str, message: str, type: str = "Warning", uid: str = ""):
        """An event about the pod or Job ``name`` (about its namesake of another ``uid``, if given)."""
        read = self.core.read_namespaced_pod if kind == "Pod" else self.batch.read_namespaced_job
        involved = {"kind": kind, "name": name, "namespace": NS, "uid": uid or read(name, NS).metadata.uid}
        meta = {"name": f"{name}.{uuid.uuid4().hex[:8]}", "namespace": NS}
        body = {"metadata": meta, "involvedObject": involved, "reason": reason, "message": message, "type": type}
        self.core.create_namespaced_event(NS, body)

    def wait(self, pod: str, reason: str, message: str):
        waiting = _container() | {"state": {"waiting": {"reason": reason, "message": message}}}
        self.core.patch_namespaced_pod_status(pod, NS, {"status": {"phase": "Pending", "containerStatuses": [waiting]}})

    # -- the test's own controllers --------------------------------------------------------------------

    def play(self, volume_root):
        """Run a Job controller, a kubelet and a garbage collector, in a thread: a pod runs the
        contract's fake program (its args) with the PVC's sub-paths under ``volume_root``."""
        self._playing = threading.Thread(target=self._play, args=(volume_root,), daemon=True)
        self._playing.start()

    def _play(self, volume_root):
        while not self._done.wait(0.01):
            try:
                self._step(volume_root)
            except ApiException:
                pass  # a race with the runner (a Job deleted meanwhile): try again, as controllers do

    def _step(self, volume_root):
        jobs = {j["metadata"]["uid"]: j for j in self.list(self.batch, "job")}
        for pod in self.list(self.core, "pod"):
            if pod["metadata"]["ownerReferences"][0]["uid"] not in jobs:
                self.core.delete_namespaced_pod(pod["metadata"]["name"], NS)
        for job in jobs.values():
            self._reconcile(job, volume_root)

    def _reconcile(self, job: dict, volume_root):
        name, pods = job["metadata"]["name"], self.pods(job)
        if job["metadata"].get("deletionTimestamp"):
            self.collect(job)
        elif not pods and not job.get("status", {}).get("conditions"):
            self.create_pod(name)
        elif pods and pods[0]["status"]["phase"] == "Pending":
            self.run(pods[0]["metadata"]["name"], "started\n")
        elif pods and pods[0]["status"]["phase"] == "Running":
            self._program(job, pods[0], volume_root)

    def _program(self, job: dict, pod: dict, volume_root):
        main = pod["spec"]["containers"][0]
        kind, name = main["args"][0], pod["metadata"]["name"]
        if kind == "succeed":
            for mount in main["volumeMounts"]:
                if not mount["readOnly"]:
                    (volume_root / mount["subPath"] / "result").write_text("made\n")
            self.write_log(name, "hello\n")
            self.terminate(name, 0, "Completed")
            self.end_job(job["metadata"]["name"], "Complete")
        elif kind == "fail":
            self.write_log(name, "oops\n")
            self.terminate(name, 3, "Error")
            self.end_job(job["metadata"]["name"], "Failed", "BackoffLimitExceeded", "Job has reached the limit")


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
def runner(cluster, store):
    return cluster.runner(store.layout)


def started(runner) -> Job:
    """A new run's worker, just created."""
    job = a_job()
    runner.prepare(job)
    job.worker = runner.start(job)
    return job


# -- the runner through the API -------------------------------------------------------------------


class TestStart:
    def test_start_creates_the_job_and_returns_its_name(self, cluster, runner):
        job = started(runner)
        assert job.worker == job_name(job.run_id)
        created = cluster.job(job.worker)
        assert created["spec"] == job_manifest(job, NS, PVC, priority_class="knit-worker-priority")["spec"]
        assert created["metadata"]["labels"]["knit/worker.runid"] == job.run_id

    def test_prepare_makes_empty_outputs_anyone_may_write(self, runner, store):
        job = a_job()
        runner.prepare(job)
        assert store.layout.staging("out-1").stat().st_mode & 0o777 == 0o777
        assert (store.layout.staging("log-1") / "log").read_bytes() == b""

    def test_a_job_the_api_server_rejects_is_a_runner_error(self, cluster, runner):
        cluster.emulator[kmock.action.CREATE, JOBS] << kmock.KubernetesError(
            422, "Invalid", 'Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value'
        )
        with pytest.raises(RunnerError, match="containers\\[0\\].image: Required value"):
            started(runner)

    def test_a_job_still_being_deleted_is_not_taken_for_a_new_attempt(self, cluster, runner):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        cluster.run(pod)
        assert runner.stop(job) is False  # deleting, in the foreground
        with pytest.raises(RuntimeError, match="still being deleted"):
            runner.start(job)


class Clock:
    """Wall time that a test moves forward (the runner's ``clock``): deadlines without sleeping."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float):
        self.offset += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def timed(cluster, store, clock):
    """A runner on the test's clock."""
    return cluster.runner(store.layout, clock=clock)


def pending_pod(cluster, runner, scheduled: bool = True) -> tuple[Job, str]:
    job = started(runner)
    pod = cluster.create_pod(job.worker)
    if scheduled:
        cluster.schedule(pod)
    return job, pod


class TestStatus:
    def test_from_start_to_success(self, cluster, runner):
        job = started(runner)
        assert runner.status(job).state == WorkerState.STARTING  # no pod yet
        pod = cluster.create_pod(job.worker)
        assert runner.status(job).state == WorkerState.STARTING
        cluster.run(pod)
        assert runner.status(job).state == WorkerState.RUNNING
        cluster.terminate(pod, 0, "Completed")
        assert _as_tuple(runner.status(job)) == (WorkerState.SUCCEEDED, 0, "")

    @pytest.mark.parametrize(("code", "reason"), [(3, "Error"), (137, "OOMKilled")])
    def test_the_exit_code_and_reason_of_the_main_container(self, cluster, runner, code, reason):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        cluster.run(pod)
        cluster.terminate(pod, code, reason)
        assert _as_tuple(runner.status(job)) == (WorkerState.FAILED, code, f"(container main) {reason}")

    def test_a_job_that_failed_without_its_pod(self, cluster, runner):
        job = started(runner)
        cluster.end_job(job.worker, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        assert _as_tuple(runner.status(job)) == (
            WorkerState.FAILED,
            254,
            f"(job {job.worker}) [DeadlineExceeded] Job was active longer than specified deadline",
        )

    def test_a_vanished_job_is_missing(self, cluster, runner):
        job = started(runner)
        cluster.batch.delete_namespaced_job(job.worker, NS)
        assert _as_tuple(runner.status(job)) == (WorkerState.MISSING, 254, "worker for the run is not found")

    def test_a_pod_deleted_mid_run_fails_the_run_with_the_jobs_reason_and_keeps_its_log(self, cluster, runner, store):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        cluster.run(pod, "epoch 1\n")
        assert runner.status(job).state == WorkerState.RUNNING
        wait_for(lambda: (store.layout.staging(job.log) / "log").read_bytes() == b"epoch 1\n")
        cluster.core.delete_namespaced_pod(pod, NS)
        assert runner.status(job).state == WorkerState.STARTING  # the Job controller has yet to notice
        cluster.end_job(job.worker, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        assert _as_tuple(runner.status(job)) == (
            WorkerState.FAILED,
            254,
            f"(job {job.worker}) [BackoffLimitExceeded] Job has reached the specified backoff limit",
        )
        runner.cleanup(job)
        assert (store.layout.staging(job.log) / "log").read_bytes() == b"epoch 1\n"

    def test_an_unschedulable_pod_waits_long_past_the_old_300_seconds(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed, scheduled=False)
        cluster.event("Pod", pod, "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.")
        for _ in range(3):
            clock.advance(3600)
            assert _as_tuple(timed.status(job)) == (
                WorkerState.STARTING,
                None,
                f"waiting: (pod {pod}) [FailedScheduling] 0/1 nodes are available: 1 Insufficient cpu.",
            )
        cluster.schedule(pod)
        cluster.run(pod)
        assert _as_tuple(timed.status(job)) == (WorkerState.RUNNING, None, "")

    def test_a_job_that_cannot_make_its_pod_says_why_and_keeps_waiting(self, cluster, timed, clock):
        job = started(timed)
        cluster.event("Job", job.worker, "FailedCreate", "from an earlier Job of this name", uid=str(uuid.uuid4()))
        assert _as_tuple(timed.status(job)) == (WorkerState.STARTING, None, "")
        forbidden = 'pods "worker-run-x" is forbidden: error looking up service account knitfab/trainer'
        cluster.event("Job", job.worker, "FailedCreate", forbidden)
        clock.advance(24 * 3600)
        assert _as_tuple(timed.status(job)) == (
            WorkerState.STARTING,
            None,
            f"waiting: (job {job.worker}) [FailedCreate] {forbidden}",
        )
        cluster.create_pod(job.worker)  # the controller's retry works once the account exists
        assert timed.status(job).message == ""

    def test_an_image_that_cannot_be_pulled_fails_after_a_bounded_back_off(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed)
        cluster.wait(pod, "ContainerCreating", "")
        assert _as_tuple(timed.status(job)) == (WorkerState.STARTING, None, "")
        back_off = 'Back-off pulling image "registry.example.com:5000/train:v1"'
        cluster.wait(pod, "ImagePullBackOff", back_off)
        assert _as_tuple(timed.status(job)) == (
            WorkerState.STARTING,
            None,
            f"waiting: (pod {pod}) [ImagePullBackOff] {back_off}",
        )
        clock.advance(timed.deadlines.pull)
        assert _as_tuple(timed.status(job)) == (WorkerState.FAILED, 255, f"(pod {pod}) [ImagePullBackOff] {back_off}")

    def test_a_pull_failure_event_fails_after_the_same_back_off(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed)
        cluster.event("Pod", pod, "Pulling", "Pulling image", type="Normal")
        cluster.event("Pod", pod, "Failed", 'Failed to pull image "registry.example.com:5000/train:v1": not found')
        assert timed.status(job).state == WorkerState.STARTING
        clock.advance(timed.deadlines.pull)
        assert _as_tuple(timed.status(job)) == (
            WorkerState.FAILED,
            255,
            f'(pod {pod}) [Failed] Failed to pull image "registry.example.com:5000/train:v1": not found',
        )

    @pytest.mark.parametrize(
        ("reason", "message"),
        [
            ("CreateContainerConfigError", 'secret "db-password" not found'),
            ("InvalidImageName", 'Failed to apply default image tag "Train:v1": invalid reference format'),
        ],
    )
    def test_what_can_never_start_fails_at_once(self, cluster, runner, reason, message):
        job, pod = pending_pod(cluster, runner)
        cluster.wait(pod, reason, message)
        assert _as_tuple(runner.status(job)) == (WorkerState.FAILED, 255, f"(pod {pod}) [{reason}] {message}")

    def test_a_volume_that_cannot_be_mounted_fails_past_its_deadline(self, cluster, timed, clock):
        job, pod = pending_pod(cluster, timed)
        message = 'MountVolume.SetUp failed for volume "data": mount failed: exit status 32'
        cluster.event("Pod", pod, "FailedMount", message)
        assert timed.status(job).message == f"waiting: (pod {pod}) [FailedMount] {message}"
        clock.advance(timed.deadlines.mount)
        assert _as_tuple(timed.status(job)) == (WorkerState.FAILED, 255, f"(pod {pod}) [FailedMount] {message}")

    def test_a_pod_of_an_earlier_job_of_the_same_name_is_not_this_worker(self, cluster, runner):
        job = started(runner)
        old = cluster.create_pod(job.worker)
        cluster.run(old)
        cluster.terminate(old, 1, "Error")
        cluster.batch.delete_namespaced_job(job.worker, NS)  # its pod lingers
        assert runner.start(job) == job.worker
        assert runner.status(job).state == WorkerState.STARTING


def log_of(store, job) -> bytes:
    return (store.layout.staging(job.log) / "log").read_bytes()


def running(cluster, runner, text: str = "") -> tuple[Job, str]:
    job = started(runner)
    pod = cluster.create_pod(job.worker)
    cluster.run(pod, text)
    assert runner.status(job).state == WorkerState.RUNNING  # the engine's watch: the follower starts
    return job, pod


def kill_follower(cluster, runner, job):
    """Stop the runner's log follower and wait until it is gone (its stream broken off)."""
    follower = runner._logs.followers[job.run_id]
    follower.stop()
    cluster.emulator.cut_streams = True
    follower.join(5)
    assert not follower.is_alive()
    cluster.emulator.cut_streams = False


class TestLogs:
    def test_the_log_data_fills_while_the_worker_runs(self, cluster, runner, store):
        job, pod = running(cluster, runner, "line 1\n")
        wait_for(lambda: log_of(store, job) == b"line 1\n")
        cluster.write_log(pod, "line 2\n")
        wait_for(lambda: log_of(store, job) == b"line 1\nline 2\n")

    def test_a_broken_stream_resumes_from_the_last_line_without_repeating_it(self, cluster, runner, store):
        cluster.emulator.cut_streams = True  # every follow request ends after what there is
        job, pod = running(cluster, runner, "line 1\nline 2\n")
        wait_for(lambda: log_of(store, job) == b"line 1\nline 2\n")
        cluster.emulator.log_errors += [500, 503]
        cluster.write_log(pod, "line 3\n")
        wait_for(lambda: log_of(store, job) == b"line 1\nline 2\nline 3\n")
        since = [r.params.get("sinceSeconds") for r in cluster.emulator if r.subresource == "log"]
        assert since[0] is None and all(since[1:]), "reconnects ask only for the recent lines"

    def test_logs_reads_the_log_data_and_follows_it_until_the_worker_ends(self, cluster, runner):
        job, pod = running(cluster, runner, "line 1\n")
        chunks = runner.logs(job, follow=True)
        assert next(chunks) == b"line 1\n"
        cluster.write_log(pod, "line 2\n")
        assert next(chunks) == b"line 2\n"
        cluster.terminate(pod, 0, "Completed")
        runner.status(job)
        assert list(chunks) == []

    def test_following_a_starting_worker_waits_for_it(self, cluster, runner):
        job = started(runner)
        pod = cluster.create_pod(job.worker)
        threading.Timer(0.2, cluster.run, args=(pod, "late\n")).start()
        chunks = runner.logs(job, follow=True)
        assert next(chunks) == b"late\n"
        chunks.close()

    def test_cleanup_completes_the_log_and_deletes_the_job(self, cluster, runner, store):
        job, pod = running(cluster, runner, "line 1\n")
        cluster.write_log(pod, "line 2\n")
        cluster.terminate(pod, 0, "Completed")
        assert runner.stop(job) is True  # it has ended: nothing to stop, the Job stays for cleanup
        runner.cleanup(job)
        assert log_of(store, job) == b"line 1\nline 2\n"
        assert cluster.job(job.worker) is None
        assert runner.status(job).state == WorkerState.MISSING
        runner.cleanup(job)  # again, after a crash: nothing left to do, and the log stays
        assert log_of(store, job) == b"line 1\nline 2\n"

    def test_a_restarted_server_carries_on_the_log_without_writing_it_twice(self, cluster, runner, store):
        job, pod = running(cluster, runner, "before\n")
        wait_for(lambda: log_of(store, job) == b"before\n")
        kill_follower(cluster, runner, job)  # the server goes down
        cluster.write_log(pod, "during\n")
        restarted = cluster.runner(store.layout)
        assert restarted.status(job).state == WorkerState.RUNNING
        cluster.write_log(pod, "after\n")
        wait_for(lambda: log_of(store, job) == b"before\nduring\nafter\n")

    @pytest.mark.parametrize("status", [503, 429])
    def test_errors_of_the_log_endpoint_at_cleanup_are_retried_for_a_bounded_time(
        self, cluster, timed, store, clock, status
    ):
        job, pod = running(cluster, timed, "line 1\n")
        wait_for(lambda: log_of(store, job) == b"line 1\n")
        kill_follower(cluster, timed, job)  # it misses the end, which cleanup must fetch
        cluster.write_log(pod, "line 2\n")
        cluster.terminate(pod, 0, "Completed")
        cluster.emulator.log_errors += [status] * 1000
        began = time.monotonic()
        with pytest.raises(RuntimeError, match="cannot be read yet"):
            timed.cleanup(job)  # the engine tries again next tick
        assert cluster.job(job.worker) is not None
        clock.advance(timed.deadlines.log)
        timed.cleanup(job)  # past the deadline: the run finishes with the log it has
        assert time.monotonic() - began < 10
        assert cluster.job(job.worker) is None
        assert log_of(store, job) == b"line 1\n"

    def test_a_log_error_at_cleanup_that_passes_loses_nothing(self, cluster, runner, store):
        job, pod = running(cluster, runner, "line 1\n")
        wait_for(lambda: log_of(store, job) == b"line 1\n")
        kill_follower(cluster, runner, job)
        cluster.write_log(pod, "line 2\n")
        cluster.terminate(pod, 0, "Completed")
        cluster.emulator.log_errors += [503]
        with pytest.raises(RuntimeError):
            runner.cleanup(job)
        runner.cleanup(job)
        assert log_of(store, job) == b"line 1\nline 2\n"

    def test_stop_deletes_a_running_worker_and_its_log_so_far_stays(self, cluster, runner, store):
        job, pod = running(cluster, runner, "working\n")
        wait_for(lambda: log_of(store, job) == b"working\n")
        assert runner.stop(job) is False
        assert cluster.job(job.worker)["metadata"]["deletionTimestamp"]
        assert runner.stop(job) is False  # still being deleted: the pod is still there
        cluster.collect(cluster.job(job.worker))
        assert runner.stop(job) is True
        runner.cleanup(job)
        assert log_of(store, job) == b"working\n"


class TestRestart:
    def test_a_new_runner_finds_the_worker_by_its_handle(self, cluster, runner, store):
        job = started(runner)
        cluster.run(cluster.create_pod(job.worker))
        restarted = cluster.runner(store.layout)
        assert restarted.status(job).state == WorkerState.RUNNING
        assert restarted.find_workers() == {job.run_id: job.worker}

    def test_reconcile_deletes_the_workers_of_runs_the_store_no_longer_follows(self, cluster, runner, store):
        kept, stray = started(runner), started(runner)
        other_server = cluster.runner(store.layout, pvc="another-pvc")
        other = started(other_server)
        restarted = cluster.runner(store.layout)
        assert restarted.reconcile({kept.run_id}) == [stray.worker]
        assert restarted.find_workers() == {kept.run_id: kept.worker}
        assert cluster.job(other.worker) is not None  # not this server's worker


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


# -- the contract -----------------------------------------------------------------------------------


class TestKubernetesRunner(RunnerContract):
    @pytest.fixture
    def runner(self, cluster, store):
        cluster.play(store.layout.root)
        return cluster.runner(store.layout)

    def program(self, kind):
        return ["fake"], [kind]


# -- API load -------------------------------------------------------------------------------------


@pytest.mark.slow
class TestApiLoad:
    """The engine's watch over many runs reads one snapshot: the requests of a tick do not grow
    with the number of runs (it was 2–3 per run per tick, 60–100 requests/s at 32 runs)."""

    RUNS = 32

    def requests_per_tick(self, cluster, runner, engine) -> list:
        runner._snapshot = knitfab.runners.k8s.Snapshot()  # as after max_age: one refresh in this tick
        before = len(cluster.emulator)
        engine.tick()
        return [
            f"{r.method.value} {r.resource.plural}{'/' + r.subresource if r.subresource else ''}"
            for r in list(cluster.emulator)[before:]
        ]

    def test_requests_per_tick_for_32_active_runs(self, cluster, store):
        from helpers import apply, push

        from knitfab.engine import Engine

        runner = cluster.runner(store.layout, max_age=float("inf"))
        engine = Engine(store, runner)
        apply(store, {"/in": ["kind:x"]}, {"/out": ["kind:y"]})
        for i in range(self.RUNS):
            push(store, "kind:x", files={"n": str(i)})
        engine.run_until_idle()
        jobs = cluster.list(cluster.batch, "job")
        assert len(jobs) == self.RUNS
        pods = [cluster.create_pod(j["metadata"]["name"], j) for j in jobs]

        waiting = self.requests_per_tick(cluster, runner, engine)  # all 32 pending: events are read too
        assert len(waiting) == 3, waiting
        for pod in pods:
            cluster.run(pod, "training\n")
        self.requests_per_tick(cluster, runner, engine)  # to running: the log followers start
        running = self.requests_per_tick(cluster, runner, engine)
        assert sorted(running) == ["GET jobs", "GET pods"]
        print(f"\nAPI requests per engine tick, {self.RUNS} runs: {len(waiting)} while pending, {len(running)} running")
        statuses = store.column("SELECT status FROM run r JOIN plan p USING (plan_id) WHERE p.name IS NULL")
        assert statuses == ["running"] * self.RUNS


class TestRbac:
    def test_the_role_in_the_manifests_grants_exactly_what_the_runner_calls(self, cluster, store):
        from knitfab.manifest import RUNNER_VERBS

        runner = cluster.runner(store.layout)
        cluster.claim(PVC, "ReadWriteOnce")
        runner.pin_to_storage("node-1")
        done, stopped = started(runner), started(runner)
        for job, end in ((done, "finish"), (stopped, "stop")):
            pod = cluster.create_pod(job.worker)
            cluster.event("Pod", pod, "FailedScheduling", "0/1 nodes are available")
            runner.status(job)
            cluster.run(pod, "hello\n")
            runner.status(job)
            if end == "finish":
                cluster.terminate(pod, 0, "Completed")
                runner.stop(job)
            else:
                runner.stop(job)
                cluster.collect(cluster.job(job.worker))
            runner.cleanup(job)
        runner.reconcile(set())
        called: dict = {}
        for r in cluster.emulator:
            if r.headers.get("User-Agent") == RUNNER_AGENT:
                key = (r.resource.group, r.resource.plural + (f"/{r.subresource}" if r.subresource else ""))
                called.setdefault(key, set()).add(_verb(r))
        assert {key: sorted(verbs) for key, verbs in called.items()} == {k: sorted(v) for k, v in RUNNER_VERBS.items()}


def _verb(request) -> str:
    method = request.method.value
    if method == "GET":
        return "get" if request.name else "list"
    return {"POST": "create", "DELETE": "delete", "PATCH": "patch", "PUT": "update"}[method]


class TestTheRunsMessage:
    def test_a_waiting_run_says_why_in_its_message_until_it_runs(self, cluster, store):
        from helpers import apply, push

        from knitfab.engine import Engine
        from knitfab.store import runs

        runner = cluster.runner(store.layout)
        engine = Engine(store, runner)
        apply(store, {"/in": ["kind:x"]}, {"/out": ["kind:y"]}, service_account="trainer")
        push(store, "kind:x")
        engine.run_until_idle()
        (run_id,) = store.column("SELECT run_id FROM run r JOIN plan p USING (plan_id) WHERE p.name IS NULL")
        worker = job_name(run_id)
        cluster.event("Job", worker, "FailedCreate", "error looking up service account knitfab/trainer: not found")
        engine.tick()
        shown = runs.show_run(store, run_id)
        assert shown.status == "starting" and shown.exit_code is None
        assert shown.message == (
            f"waiting: (job {worker}) [FailedCreate] error looking up service account knitfab/trainer: not found"
        )
        cluster.run(cluster.create_pod(worker))
        engine.tick()
        shown = runs.show_run(store, run_id)
        assert shown.status == "running" and shown.message == ""


class TestLogPosition:
    def test_a_position_left_by_an_earlier_attempt_never_pads_the_new_log(self, cluster, runner, store):
        job, pod = running(cluster, runner, "first attempt\n")
        wait_for(lambda: log_of(store, job) == b"first attempt\n")
        kill_follower(cluster, runner, job)  # the server dies before cleanup forgets the position
        restarted = cluster.runner(store.layout)
        restarted.prepare(job)  # a retry: the log Data is empty again
        assert log_of(store, job) == b""
        assert not (store.layout.worker(job.run_id) / "log.position").exists()

    def test_a_stale_position_is_dropped_instead_of_padding_the_file(self, tmp_path):
        from knitfab.runners.k8slog import LogCopy, Position

        (tmp_path / "log").write_bytes(b"")
        Position(ns=10**18, same=1, size=100).save(tmp_path / "log.position")
        copy = LogCopy(tmp_path / "log", tmp_path / "log.position")
        assert (tmp_path / "log").read_bytes() == b"" and copy.since_seconds(0) is None
        copy.feed([b"2024-05-01T10:00:00.5Z hello\n"], flush=True)
        assert (tmp_path / "log").read_bytes() == b"hello\n"
