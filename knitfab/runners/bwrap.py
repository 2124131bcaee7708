"""The bubblewrap command lines of a local run: what it sees (docs/security.md). Host mode
(``sandbox()``: the host's system read-only) and image mode (``_image_sandbox()``: the image's
unpacked root); the ``LocalRunner`` wraps either in ``confine()``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..images import sandbox as imagesandbox
from ..store.layout import Layout
from .limits import Limits
from .protocol import Job
from .runuser import RunUser, sandbox_user_args
from .workdirs import Workdirs

SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
PATH = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"
# Host files a run must not see even though their directory is visible (DAC would refuse them to
# the run's uid as well; these are covered so that not even their size shows).
SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/security/opasswd")


class SandboxCommands:
    """The command lines of the ``LocalRunner`` (which sets these attributes)."""

    layout: Layout
    workdir: Workdirs
    user: RunUser
    pids: int
    network: bool
    images: dict[str, Path]
    image_cache: object

    def sandbox(self, job: Job) -> list[str]:
        """The bubblewrap command line of a run."""
        # The private /tmp comes first: a bind below /tmp (a venv, a data dir) must not be hidden.
        limits = Limits.of(job.resources, self.pids)
        cmd = ["bwrap", *sandbox_user_args(self.user), "--die-with-parent", "--tmpfs", "/", *private_tmp(limits)]
        if self.network:
            cmd += ["--share-net", "--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
        cmd += _system_binds() + self._hidden() + kernel_views(limits)
        for m in job.inputs:
            cmd += ["--ro-bind", str(self.layout.data(m.knit_id)), m.path]
        for m in job.outputs:
            cmd += ["--bind", str(self.layout.staging(m.knit_id)), m.path]
        image_dir = self.images.get(job.image)
        if image_dir is not None:
            cmd += ["--ro-bind", str(image_dir), "/work"]
        cmd += ["--chdir", "/work" if image_dir else "/", "--clearenv"]
        env = {"PATH": sandbox_path(), "HOME": "/tmp", "TMPDIR": "/tmp",
               "LANG": "C.UTF-8", "KNIT_RUN_ID": job.run_id}  # fmt: skip
        for key, value in {**env, **job.env}.items():
            cmd += ["--setenv", key, value]
        return cmd + ["--remount-ro", "/", "--", *job.entrypoint, *job.args]

    def _hidden(self) -> list[str]:
        """Covers for host secrets inside the visible system directories, and for the data
        directory itself when it lives in one of them (``/opt/knitfab``)."""
        cover = [a for f in SECRETS if os.path.isfile(f) for a in ("--ro-bind", "/dev/null", f)]
        root = str(self.layout.root)
        if any(root == d or root.startswith(d + "/") for d in SYSTEM_DIRS if os.path.isdir(d)):
            cover += ["--tmpfs", root, "--remount-ro", root]  # empty, read-only
        return cover

    def _image_sandbox(self, job: Job, image) -> list[str]:
        """The bubblewrap command line of a run of an image: its unpacked root as ``/``."""
        workdir = self.workdir(job.run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rootfs").write_text(image.key)  # the cache never collects what a live run uses
        root, config = self.image_cache.rootfs(image), image.config
        cwd = imagesandbox.workdir(config)
        limits = Limits.of(job.resources, self.pids)
        uid, gid = imagesandbox.identity(root, config.get("User"))
        cmd = ["bwrap", *sandbox_user_args(self.user, uid, gid), "--die-with-parent", "--tmpfs", "/"]
        cmd += imagesandbox.root_binds(root, [m.path for m in job.inputs + job.outputs], cwd)
        cmd += kernel_views(limits) + private_tmp(limits) + (["--share-net"] if self.network else [])
        cmd += self._data_binds(job)
        cmd += ["--remount-ro", "/", "--chdir", cwd, "--clearenv"]
        for key, value in {**imagesandbox.environment(config), "KNIT_RUN_ID": job.run_id}.items():
            cmd += ["--setenv", key, value]
        return cmd + ["--", *imagesandbox.command(config, job.entrypoint, job.args)]

    def _data_binds(self, job: Job) -> list[str]:
        binds = []
        for m in job.inputs:
            binds += ["--ro-bind", str(self.layout.data(m.knit_id)), m.path]
        for m in job.outputs:
            binds += ["--bind", str(self.layout.staging(m.knit_id)), m.path]
        return binds


# A virtualenv is mounted at this fixed place in the sandbox, not at its own path: a plan's image
# folder is mounted at /work, which would hide a venv living under /work (a checkout's .venv).
VENV_MOUNT = "/knitfab-python"


def private_tmp(limits: Limits) -> list[str]:
    """A writable /tmp of the run's tmpfs size (in memory: it counts against the memory limit)."""
    return ["--size", str(limits.tmp_size), "--tmpfs", "/tmp"]


def kernel_views(limits: Limits) -> list[str]:
    """/proc of the run's own pid namespace, read-only (no /proc/sys writes, no sysrq); /dev with
    the usual devices and a /dev/shm of the tmpfs size; no /sys at all."""
    proc = ["--proc", "/proc", "--remount-ro", "/proc"]
    dev = ["--dev", "/dev", "--size", str(limits.tmp_size), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    return proc + dev


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def sandbox_path() -> str:
    """The server's Python first: plans run ``python`` with what the server has installed."""
    python_bin = f"{VENV_MOUNT}/bin" if _in_venv() else str(Path(sys.executable).parent)
    return f"{python_bin}:{PATH}"


def _system_binds() -> list[str]:
    binds = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            binds += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            binds += ["--ro-bind", d, d]
    for prefix in sorted({sys.base_prefix, sys.exec_prefix} - {sys.prefix} if _in_venv() else {sys.prefix}):
        if not prefix.startswith(("/usr/", "/opt/")) and prefix != "/usr":
            binds += ["--ro-bind", prefix, prefix]
    if _in_venv():
        binds += ["--ro-bind", sys.prefix, VENV_MOUNT]
    return binds
