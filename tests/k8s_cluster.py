"""kmock's emulated Kubernetes API server for the tests of the Kubernetes runner, and the ``Cluster``
that moves Jobs and pods there: nothing moves unless a test moves it. It patches Job and pod statuses,
adds events and pod logs, and for the runner contract plays a Job controller and a kubelet that run
the contract's fake programs.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from functools import partial

import kmock
from kubernetes.client import ApiClient, BatchV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from knitfab.runners.k8s import KubernetesRunner

NS = "knitfab"
PVC = "knitfab-data"
PODS, JOBS, EVENTS = kmock.resource("v1/pods"), kmock.resource("batch/v1/jobs"), kmock.resource("v1/events")
PVCS = kmock.resource("v1/persistentvolumeclaims")
RUNNER_AGENT = "knitfab-runner-under-test"


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
