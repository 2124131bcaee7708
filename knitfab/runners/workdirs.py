"""Where the local runner keeps its workers' directories.

A worker's directory holds the state of live processes, not data: the run's ``exit`` file, its
gate's FIFOs, its ``handle``, the names of its cgroups. When the server is root it lives on a
tmpfs, as runc keeps its containers' state in ``/run``: in ``/run/knitfab/`` where ``/run`` is
a tmpfs, else in ``/dev/shm/knitfab/``, in a folder of the data directory's own (named by a
hash of its path). Otherwise, and when that folder is not safely ours, it is
``<data-dir>/workers/``.

Why: the ~8 files a run's worker creates and removes cost the data disk's file system far more
than a tmpfs. On ext4 without a journal (this project's CI machines), every new inode is found
by skipping the inodes removed in the last minutes one by one: at 100 runs/s that was 1-3 ms of
the engine's CPU per run, growing with the rate, against ~0.1 ms on a tmpfs
(``bench/engine_bench.py``). A tmpfs survives a ``kill -9`` of the server, which finds its
workers there again; a reboot empties it, and leaves no worker to find either (a run whose
worker is gone fails, as it did on the disk).

The worker directories of an older server (``<data-dir>/workers/``) are still used for their
runs. The folder of a data directory that no longer exists is removed when a runner starts.
Every file here is small and bounded: a run's output goes to its log Data, on the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path

log = logging.getLogger(__name__)
TMPFS = ("/run", "/dev/shm")  # where a tmpfs usually is, the root-only one first


class Workdirs:
    """The worker directories of one data directory, and their trash."""

    def __init__(self, root: Path, tmpfs: tuple[str, ...] | None = None):
        self.disk = root / "workers"
        base = own_folder(root, TMPFS if tmpfs is None else tmpfs) if os.geteuid() == 0 else None
        self.folder = base / "workers" if base else self.disk
        self.trash = base / "trash" if base else root / "trash"
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # runs an older server started keep their directory on the disk
        self._legacy = set(os.listdir(self.disk)) if base and self.disk.is_dir() else set()

    def __call__(self, run_id: str) -> Path:
        """The worker directory of the run."""
        return self.disk / run_id if run_id in self._legacy else self.folder / run_id

    def all(self) -> list[Path]:
        """Every worker directory there is."""
        found = list(self.folder.iterdir())
        return found + [self.disk / r for r in self._legacy if (self.disk / r).exists()]


def own_folder(root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The data directory's folder on the first tmpfs of ``candidates`` where ``knitfab/`` is
    this user's alone; None if there is none."""
    mounts = tmpfs_mounts()
    for base in (c for c in candidates if c in mounts):
        parent = Path(base) / "knitfab"
        try:
            parent.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            log.warning("cannot use %s for the workers' state: %s", parent, e)
            continue
        if _claim(parent):
            _prune(parent)
            folder = parent / hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
            folder.mkdir(mode=0o700, exist_ok=True)
            (folder / "root").write_text(str(root))  # whose it is, for _prune
            return folder
        log.warning("%s is a link or not this user's: not used for the workers' state", parent)
    return None


def _prune(parent: Path) -> None:
    """Remove the folders of data directories that are gone (a tmpfs is memory: a test suite
    makes hundreds of data directories, and their workers' state would stay until a reboot)."""
    for folder in parent.iterdir():
        try:
            owner = (folder / "root").read_text()
        except OSError:
            continue  # being made right now, or not ours to judge
        if not os.path.isdir(owner):
            shutil.rmtree(folder, ignore_errors=True)


def tmpfs_mounts() -> set[str]:
    """The mount points of tmpfs file systems (``/proc/self/mounts``)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    return {fields[1] for fields in (line.split() for line in lines) if len(fields) > 2 and fields[2] == "tmpfs"}


def _claim(folder: Path) -> bool:
    """Whether ``folder`` is a directory itself (no link) and this user's, now closed to others:
    ``/dev/shm`` is writable by all, so another user may have made ``knitfab/`` first (its
    sticky bit keeps others from replacing ours once it is)."""
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return True
