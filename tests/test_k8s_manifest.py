"""The Jobs the Kubernetes runner makes (knitfab/runners/k8sjob.py ``job_manifest``), validated offline
against a pinned Kubernetes API schema (kubernetes-validate, strict).
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from k8s_cluster import NS, PVC
from k8s_helpers import a_job
from schemas import K8S_VERSIONS

import knitfab.runners.k8sjob
from knitfab.runners.k8sjob import job_manifest


def validated(manifest: dict) -> dict:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    return manifest


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
