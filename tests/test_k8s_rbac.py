"""The Role in the manifests (knitfab/manifest.py ``RUNNER_VERBS``) grants exactly the API calls the
Kubernetes runner makes.
"""

from __future__ import annotations

from k8s_cluster import PVC, RUNNER_AGENT
from k8s_helpers import started

pytest_plugins = ["k8s_helpers"]  # the cluster, runner, clock and timed fixtures


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
