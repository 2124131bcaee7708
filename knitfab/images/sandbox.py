"""What a run of an image looks like inside bubblewrap: its root, command, environment and user.

The root is a tmpfs on which every top-level entry of the unpacked image is bind-mounted
read-only (symlinks recreated as symlinks), then remounted read-only. Directories on the way to
a plan path the image lacks are rebuilt on the tmpfs the same way, one level at a time, so
bubblewrap can make the mount point without writing into the shared cache. A plan path that
goes through a symlink of the image is refused: bubblewrap resolves mount destinations before
the sandbox exists, where an image's absolute symlink would point into the host.

Command and arguments follow Kubernetes: the plan's ``entrypoint`` replaces the image's
Entrypoint (and then its Cmd too); the plan's ``args`` replace the image's Cmd.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .rootfs import Parts, read_file, split

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OWN_MOUNTS = {"dev", "proc", "sys", "tmp"}  # the sandbox's own, never the image's


class ImageConfigError(Exception):
    """An image config or plan path this runner cannot honour; the message says why."""


def command(config: dict, entrypoint: list[str], args: list[str]) -> list[str]:
    if entrypoint:
        return [*entrypoint, *args]
    argv = [*_strings(config.get("Entrypoint")), *(args or _strings(config.get("Cmd")))]
    if not argv:
        raise ImageConfigError("the image has no Entrypoint nor Cmd, and the plan no entrypoint")
    return argv


def environment(config: dict) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp"}  # HOME: the image's root is read-only, /tmp is not
    for item in _strings(config.get("Env")):
        key, sep, value = item.partition("=")
        if sep and key:
            env[key] = value
    return env


def workdir(config: dict) -> str:
    value = config.get("WorkingDir")
    return value if isinstance(value, str) and value.startswith("/") else "/"


def identity(root: Path, user: object) -> tuple[int, int]:
    """(uid, gid) of the image's ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``),
    names looked up in the image's own /etc/passwd and /etc/group."""
    if not isinstance(user, str) or not user:
        return 0, 0
    name, _, group = user.partition(":")
    passwd = _table(root, "/etc/passwd")
    entry = next((e for e in passwd if name in (e[0], e[2])), None)
    if entry is None and not name.isdigit():
        raise ImageConfigError(f"the image's User {name!r} is not in its /etc/passwd")
    uid = int(name) if name.isdigit() else int(entry[2])
    if not group:
        return uid, int(entry[3]) if entry and entry[3].isdigit() else 0
    if group.isdigit():
        return uid, int(group)
    found = next((e for e in _table(root, "/etc/group") if e[0] == group), None)
    if found is None or not found[2].isdigit():
        raise ImageConfigError(f"the image's group {group!r} is not in its /etc/group")
    return uid, int(found[2])


def root_binds(root: Path, mounts: list[str], cwd: str) -> list[str]:
    """bwrap arguments that make ``root`` the sandbox's ``/`` with ``mounts`` mountable."""
    expand: set[Parts] = {()}
    for path in mounts:
        expand |= _to_expand(root, path)
    missing_cwd = _missing(root, split(cwd))
    if missing_cwd is not None:
        expand |= missing_cwd
    args: list[str] = []
    for parts in sorted(expand, key=lambda p: (len(p), p)):
        if parts:
            args += ["--dir", _abs(parts)]
        args += _children(root, parts, expand)
    if missing_cwd is not None:
        args += ["--dir", cwd]
    return args


def _children(root: Path, parts: Parts, expand: set[Parts]) -> list[str]:
    args: list[str] = []
    with os.scandir(root.joinpath(*parts)) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            child = (*parts, entry.name)
            if child in expand or (not parts and entry.name in OWN_MOUNTS):
                continue
            if entry.is_symlink():
                args += ["--symlink", os.readlink(entry.path), _abs(child)]
            elif entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
                args += ["--ro-bind", entry.path, _abs(child)]
    return args


def _to_expand(root: Path, path: str) -> set[Parts]:
    parts = split(path)
    if parts and parts[0] in OWN_MOUNTS:
        return set()  # under the sandbox's own tmpfs
    missing = _missing(root, parts, path)
    return missing or set()


def _missing(root: Path, parts: Parts, path: str | None = None) -> set[Parts] | None:
    """The directories to rebuild so that ``parts`` can be made, or None when it exists.
    With ``path`` (a mount destination), a symlink or a file on the way is refused."""
    for depth in range(len(parts)):
        here = root.joinpath(*parts[: depth + 1])
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return {parts[:k] for k in range(depth + 1)}
        if stat.S_ISDIR(mode):
            continue
        if path is None:
            return None  # a working directory is entered inside the sandbox: symlinks are fine there
        what = "a symlink" if stat.S_ISLNK(mode) else "a file"
        raise ImageConfigError(f"the plan path {path} goes through {_abs(parts[: depth + 1])}, {what} in the image")
    return None


def _table(root: Path, path: str) -> list[list[str]]:
    text = (read_file(root, path) or b"").decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines() if line.count(":") >= 3]


def _abs(parts: Parts) -> str:
    return "/" + "/".join(parts)


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
