"""The Kubernetes versions every object Knitfab makes is validated against, strictly and offline:
the oldest supported (1.29) and the newest whose schema the installed kubernetes-validate ships."""

from __future__ import annotations

import functools

import kubernetes_validate.utils


def _newest() -> str:
    versions = kubernetes_validate.utils.all_versions()
    return max(versions, key=lambda v: tuple(int(n) for n in v.split(".")))


OLDEST = "1.29.0"
K8S_VERSIONS = [OLDEST, _newest()]

# kubernetes-validate parses its multi-megabyte definitions file again for every object: parse each
# schema file once per test session instead (they are read-only data).
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)
