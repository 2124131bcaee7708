"""What a worker's Job, pod and Warning events say about the run: pure functions, no API calls.

Runs queue as in Knitfab: a pod the scheduler cannot place yet (``FailedScheduling``: no room, a
taint, an autoscaler still adding a node) waits for as long as it takes, and so does a Job whose
controller cannot make its pod (``FailedCreate``: a missing service account, a quota, PodSecurity;
the controller retries with its own back-off). Such a run stays *starting* with the complaint as
its message. A run fails only for what can never start, with a message naming the cause:

* at once: an image name that is invalid or must not be pulled, ``CreateContainerConfigError``
  (a missing Secret or ConfigMap, a bad user);
* once the pod has been scheduled for ``Deadlines.pull`` seconds: an image that cannot be pulled
  (``ErrImagePull``/``ImagePullBackOff``: the kubelet backs off up to 5 minutes between tries);
* once the pod has been scheduled for ``Deadlines.mount`` seconds: a volume that cannot be mounted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import WorkerState, WorkerStatus

CONTAINER = "main"
NEVER_STARTS = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})
# Warning event reasons that fail a pod past a deadline after it was scheduled.
EVENT_DEADLINES = {"Failed": "pull", "InspectFailed": "pull", "ErrImageNeverPull": "now", "FailedMount": "mount"}
RUNNING = WorkerStatus(WorkerState.RUNNING)


@dataclass(frozen=True)
class Deadlines:
    """Seconds a scheduled pod may try before its run fails: pulling its image, mounting volumes;
    ``log``: how long finishing a run keeps trying to fetch the rest of its log."""

    pull: float = 300
    mount: float = 300
    log: float = 60


def worker_status(found, pod, warnings: list, now: float, deadlines: Deadlines) -> WorkerStatus:
    """The run's state from its Job ``found``, its newest pod (or None) and the Warning events of
    that pod (or, without a pod, of the Job)."""
    known = container_state(pod, now, deadlines) if pod else None
    if known:
        return known
    if condition(found, "Complete"):
        return WorkerStatus(WorkerState.SUCCEEDED, 0, "")
    failed = condition(found, "Failed")
    if failed:  # a pod gone without a result: evicted, deleted, past a deadline
        return failure(254, f"job {found.metadata.name}", failed.reason, failed.message)
    kind, subject = ("pod", pod) if pod else ("job", found)
    return waiting(kind, subject, warnings, now, deadlines)


def container_state(pod, now: float, deadlines: Deadlines) -> WorkerStatus | None:
    """What the ``main`` container says: it runs, it has ended, or it will never start."""
    state = main_state(pod)
    if state is None:
        return None
    if state.terminated:
        return exit_status(state.terminated)
    if state.running:
        return RUNNING
    reason = state.waiting.reason if state.waiting else None
    subject = f"pod {pod.metadata.name}"
    if reason in NEVER_STARTS or (reason in PULL_FAILURES and scheduled_for(pod, now) >= deadlines.pull):
        return failure(255, subject, reason, state.waiting.message)
    if reason in PULL_FAILURES:
        return starting(subject, reason, state.waiting.message)
    return None


def waiting(kind: str, subject, warnings: list, now: float, deadlines: Deadlines) -> WorkerStatus:
    """Starting, with the newest complaint as the message, unless a complaint is past its deadline."""
    name = f"{kind} {subject.metadata.name}"
    age = scheduled_for(subject, now) if kind == "pod" else 0.0
    for event in warnings:
        limit = EVENT_DEADLINES.get(event.reason)
        if limit == "now" or (limit and kind == "pod" and age >= getattr(deadlines, limit)):
            return failure(255, name, event.reason, event.message)
    newest = max(warnings, key=event_time, default=None)
    return starting(name, newest.reason, newest.message) if newest else WorkerStatus(WorkerState.STARTING)


def main_state(pod):
    statuses = pod.status.container_statuses if pod.status else None
    main = next((s for s in statuses or [] if s.name == CONTAINER), None)
    return main.state if main else None


def scheduled_for(pod, now: float) -> float:
    """Seconds since the pod was bound to a node (0 while it is not)."""
    scheduled = condition(pod, "PodScheduled")
    at = scheduled.last_transition_time if scheduled else None
    return max(0.0, now - at.timestamp()) if at else 0.0


def condition(obj, kind: str):
    conditions = obj.status.conditions if obj.status else None
    return next((c for c in conditions or [] if c.type == kind and c.status == "True"), None)


def event_time(event) -> float:
    at = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return at.timestamp() if at else 0.0


def exit_status(ended) -> WorkerStatus:
    if ended.exit_code == 0:
        return WorkerStatus(WorkerState.SUCCEEDED, 0, "")
    return WorkerStatus(WorkerState.FAILED, ended.exit_code, f"(container {CONTAINER}) {ended.reason or 'Error'}")


def failure(code: int, subject: str, reason: str | None, message: str | None) -> WorkerStatus:
    return WorkerStatus(WorkerState.FAILED, code, f"({subject}) [{reason}] {message or ''}")


def starting(subject: str, reason: str | None, message: str | None) -> WorkerStatus:
    return WorkerStatus(WorkerState.STARTING, None, f"waiting: ({subject}) [{reason}] {message or ''}")
