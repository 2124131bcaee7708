"""Storage the Kubernetes runner can work with, checked when the server starts.

* The data volume's access mode decides where workers run: ReadWriteMany on any node,
  ReadWriteOnce only on the server's own node (a worker elsewhere would see another, empty disk, or
  fail to attach the volume); other modes cannot work at all.
* SQLite is never on a network filesystem: it needs POSIX locks and shared memory that NFS and SMB
  do not give reliably (``--db`` puts it on a volume of its own).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigurationError

log = logging.getLogger("knitfab.k8s")
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p"})


def worker_node(pvc: str, modes: list[str], node: str | None) -> str | None:
    """The node every worker must run on (None: any node) for a data volume of ``modes``, when the
    server runs on ``node``; ``ConfigurationError`` for storage that cannot work."""
    if "ReadWriteMany" in modes:
        log.info("the data volume %s is ReadWriteMany: workers run on any node", pvc)
        return None
    if "ReadWriteOnce" in modes and node:
        log.warning(
            "the data volume %s is ReadWriteOnce: every worker runs on node %s, the server's"
            " (a ReadWriteMany volume lets them run on any node: docs/kubernetes.md)", pvc, node,
        )  # fmt: skip
        return node
    if "ReadWriteOnce" in modes:
        raise ConfigurationError(
            f"the data volume {pvc} is ReadWriteOnce, and workers must then run on the server's node:"
            " set KNITFAB_NODE_NAME from the downward API (fieldRef spec.nodeName), as manifests/ do"
        )
    raise ConfigurationError(f"the data volume {pvc} is {'/'.join(modes)}: workers cannot mount it")


def refuse_network_database(db: Path, mountinfo: str | None = None) -> None:
    """Raise ``ConfigurationError`` when the SQLite file ``db`` is on NFS or another network
    filesystem (``mountinfo``: the text of /proc/self/mountinfo, read when not given)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return
    fstype = filesystem_of(db.parent.resolve(), mountinfo)
    if fstype in NETWORK_FILESYSTEMS:
        raise ConfigurationError(
            f"the database {db} is on {fstype}: SQLite needs a local disk (a ReadWriteOnce volume);"
            " put it elsewhere with --db, as manifests/rwx/ does"
        )


def filesystem_of(path: Path, mountinfo: str) -> str | None:
    """The filesystem type of the mount that holds ``path``: the longest mount point above it."""
    best, fstype = "", None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        after = line.split(" - ", 1)[1].split()
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best) and after:
            best, fstype = point, after[0]
    return fstype
