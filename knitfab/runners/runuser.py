"""Who a run is on this host, and the root-side steps of a worker that make it so.

A run never has the server's privileges. With the server as root, it executes as a dedicated
unprivileged uid and gid (``DEFAULT_RUN_UID``, or ``--run-uid``): bubblewrap then runs as that
user (``setpriv``), in a user namespace of its own whose only uid is that one, with no
capabilities and no further user namespaces. With the server as another user, runs are that
user, in the same kind of namespace.

bubblewrap resolves bind sources as the user it runs as, and the data directory need not be
open to the run's uid. So a root worker first *stages* the bind sources that uid cannot reach:
a first bubblewrap, still root and unsharing nothing but the mount namespace, keeps the host's
tree and binds each closed directory holding sources into a small tmpfs over its ``/tmp``, then
hands the run's bubblewrap the staged paths. Nothing of this is visible to the host or to other
workers. Inputs are made readable by giving their files to the run's uid (``give``: ownership
only, modes untouched, done by the server before the worker starts; Data is only read through
read-only binds, and not at all outside the sandbox by that uid), so a file uploaded with mode
0600 is readable in the run; outputs are written by that uid into staging directories it owns,
which the root server reads and deletes as any other.

The worker's chain, as root: the staging ``bwrap``, ``sh`` entering the run's cgroups (shell
built-ins; on cgroup v2 the server enters them itself, see ``gate``), ``setpriv`` (to the run's
uid), ``prlimit`` where rlimits are needed, the run's ``bwrap``: a handful of program starts,
where each is a few milliseconds of a busy machine.
"""

from __future__ import annotations

import functools
import os
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RUN_UID = 65432  # Debian reserves 65000-65533 and allocates none of it to users
STAGE = "/tmp"  # where a root worker's staged bind sources appear, in its own mount namespace

# Options of bwrap 0.8 and how many arguments each takes: staging rewrites bind sources, so an
# option it does not know is refused rather than guessed (a guess could stage a plan's path).
BINDS = {"--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try", "--dev-bind-try"}
TRY_BINDS = {"--bind-try", "--ro-bind-try", "--dev-bind-try"}
ARITY = dict.fromkeys(BINDS | {"--symlink", "--setenv", "--bind-fd", "--ro-bind-fd", "--file",
                               "--bind-data", "--ro-bind-data", "--chmod"}, 2)  # fmt: skip
ARITY.update(dict.fromkeys(
    ["--tmpfs", "--proc", "--dev", "--dir", "--remount-ro", "--mqueue", "--chdir", "--uid", "--gid",
     "--hostname", "--size", "--perms", "--cap-add", "--cap-drop", "--unsetenv", "--lock-file",
     "--sync-fd", "--block-fd", "--userns-block-fd", "--info-fd", "--json-status-fd", "--seccomp",
     "--add-seccomp-fd", "--userns", "--userns2", "--pidns", "--exec-label", "--file-label", "--argv0"],
    1,
))  # fmt: skip
FLAGS = {"--unshare-all", "--unshare-user", "--unshare-user-try", "--unshare-ipc", "--unshare-pid",
         "--unshare-net", "--unshare-uts", "--unshare-cgroup", "--unshare-cgroup-try", "--share-net",
         "--die-with-parent", "--as-pid-1", "--new-session", "--clearenv", "--disable-userns",
         "--assert-userns-disabled", "--level-prefix"}  # fmt: skip
DROP = ["--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]


@dataclass(frozen=True)
class RunUser:
    uid: int
    gid: int
    privileged: bool  # the server is root: workers stage, chown and drop to uid/gid themselves


def run_user(uid: int | None = None) -> RunUser:
    """The user runs execute as on this host: never root."""
    if os.geteuid() != 0:
        return RunUser(os.getuid(), os.getgid(), False)
    uid = DEFAULT_RUN_UID if uid is None else uid
    if uid <= 0:
        raise ValueError(f"runs must not execute as uid {uid}: choose an unused unprivileged uid")
    return RunUser(uid, uid, True)


def sandbox_user_args(user: RunUser, inside_uid: int | None = None, inside_gid: int | None = None) -> list[str]:
    """bwrap options: every namespace unshared, a user namespace holding only the run's uid (seen
    inside as ``inside_uid``, by default the same number), no capabilities, no nested namespaces."""
    uid = user.uid if inside_uid is None else inside_uid
    gid = user.gid if inside_gid is None else inside_gid
    args = ["--unshare-all", "--unshare-user", "--uid", str(uid), "--gid", str(gid), "--cap-drop", "ALL"]
    return args + (["--disable-userns"] if bwrap_supports("--disable-userns") else [])


@functools.cache
def bwrap_supports(option: str) -> bool:
    try:
        help_text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"{option} " in help_text


def launch(user: RunUser, bwrap: list[str], enter: Iterable[str] = (),
           rlimits: list[str] | None = None, status_fd: int | None = None) -> list[str]:  # fmt: skip
    """The command a worker executes: as root, the staging bwrap first (outside the run's
    cgroups: knitfab's work, not the run's); then ``sh`` runs ``enter`` (``Cgroups.entry``: the
    run's cgroups entered before anything of the run exists), and as root drops to the run's
    uid; then ``rlimits`` (prlimit) and ``bwrap``. (As root, call ``give`` for the inputs first.)
    ``status_fd``: the outermost bwrap (the staging one, else the run's), the process that
    outlives every other of the chain, writes its child's exit code there (``--json-status-fd``;
    bwrap closes it in the child: nothing of the run holds it)."""
    enter = list(enter)
    shell = ["/bin/sh", "-c", "; ".join(["set -e", *enter, 'exec "$@"']), "knitfab-launch"] if enter else []
    if not user.privileged:
        return [*shell, *(rlimits or []), *_with_status(bwrap, status_fd)]
    staged, outer = stage(bwrap)
    drop = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", *DROP, "--"]
    if outer:
        outer = _with_status(outer, status_fd)
    else:
        staged = _with_status(staged, status_fd)
    return [*outer, *shell, *drop, *(rlimits or []), *staged]


def _with_status(bwrap: list[str], status_fd: int | None) -> list[str]:
    if status_fd is None:
        return bwrap
    return [bwrap[0], "--json-status-fd", str(status_fd), *bwrap[1:]]


def give(user: RunUser, paths: Iterable[Path]) -> None:
    """Give the files under ``paths`` to the run's uid where not yet its (``chown -h``: links
    themselves, never their targets; modes untouched). Walks by directory descriptors and never
    follows a link, so a tree changed meanwhile cannot send it elsewhere."""
    mine = (user.uid, user.gid)
    for top in paths:
        for _, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != mine:
                os.chown(fd, *mine)
            for name in files + dirs:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) != mine:  # directories: when entered
                    os.chown(name, *mine, dir_fd=fd, follow_symlinks=False)


def stage(bwrap: list[str]) -> tuple[list[str], list[str]]:
    """bwrap's command line with every bind source the run's uid cannot reach replaced by a
    staged path, and the staging bubblewrap (run as root) that binds them there, ending in
    ``--``: one bind per closed directory below which sources lie (the data directory)."""
    args: list[str] = []
    anchors: dict[str, int] = {}
    searchable: dict[str, bool] = {}  # directories stat'ed once per command line: sources share them
    i = 1
    while i < len(bwrap) and bwrap[i] != "--":
        option = bwrap[i]
        width = ARITY.get(option, 0)
        if option.startswith("--") and width == 0 and option not in FLAGS:
            raise ValueError(f"cannot stage the sandbox: unknown bwrap option {option!r}")
        values = bwrap[i + 1 : i + 1 + width]
        if option in BINDS:
            option, values = _staged(option, values, anchors, searchable)
        if option:
            args += [option, *values]
        i += 1 + width
    return [bwrap[0], *args, *bwrap[i:]], _stage_bwrap(anchors)


def _staged(
    option: str, values: list[str], anchors: dict[str, int], searchable: dict[str, bool]
) -> tuple[str | None, list[str]]:
    source, dest = values
    if not os.path.exists(source):
        if option in TRY_BINDS:
            return None, []  # as bwrap would: nothing to bind
        raise ValueError(f"cannot stage the sandbox: {source} does not exist")
    anchor = _anchor(source, searchable)
    if anchor is None:
        return option, values
    n = anchors.setdefault(anchor, len(anchors))
    rest = os.path.relpath(os.path.abspath(source), anchor)
    return option, [f"{STAGE}/{n}" + ("" if rest == "." else f"/{rest}"), dest]


def _anchor(source: str, searchable: dict[str, bool]) -> str | None:
    """The directory (or file) just below the deepest ancestor of ``source`` that others may not
    search; None when every ancestor is open (``/usr``, a checkout under ``/work``)."""
    path = below = os.path.abspath(source)
    while (parent := os.path.dirname(below)) != below:
        if parent not in searchable:
            searchable[parent] = bool(os.stat(parent).st_mode & stat.S_IXOTH)
        if not searchable[parent]:
            return below
        below = parent
    # The stage is mounted over STAGE: an open source below it (a checkout in /tmp) is staged too,
    # or the mount would hide it.
    if path.startswith(STAGE + "/"):
        return f"{STAGE}/{path[len(STAGE) + 1 :].split('/')[0]}"
    return None


def _stage_bwrap(anchors: dict[str, int]) -> list[str]:
    """The staging bubblewrap (root, a mount namespace of its own, the host's tree otherwise):
    each anchor bound below a 1 MiB tmpfs over ``STAGE``; nothing when there is nothing to stage."""
    if not anchors:
        return []
    outer = ["bwrap", "--dev-bind", "/", "/", "--size", str(1 << 20), "--tmpfs", STAGE]
    for anchor, n in anchors.items():
        outer += ["--bind", anchor, f"{STAGE}/{n}"]
    return outer + ["--"]
