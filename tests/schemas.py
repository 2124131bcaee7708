"""The Kubernetes versions every object Knitfab makes is validated against, strictly and offline:
the oldest supported (1.29) and the newest whose schema the installed kubernetes-validate ships."""

from __future__ import annotations

import kubernetes_validate.utils


def _newest() -> str:
    versions = kubernetes_validate.utils.all_versions()
    return max(versions, key=lambda v: tuple(int(n) for n in v.split(".")))


OLDEST = "1.29.0"
K8S_VERSIONS = [OLDEST, _newest()]
