"""The runners: where a run's worker runs.

``protocol`` (the ``Runner`` protocol, ``Job``, ``WorkerStatus``), ``local`` (bubblewrap sandbox
on this host, with ``runuser`` and ``limits``) and ``k8s`` (Kubernetes Jobs, with ``k8slog``,
``k8sstatus`` and ``k8sstorage``; the only modules importing ``kubernetes``). Runners take paths
from ``knitfab.store.layout`` and never touch the database.
"""
