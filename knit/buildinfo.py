"""The version and commit ``knit version`` prints, without running ``git`` (start-up < 100 ms).

An installed ``knit`` reads ``COMMIT`` next to this file, written when the wheel was built
(setup.py); ``knit`` run from a git checkout reads the checkout's HEAD from ``.git`` itself.
"""

from __future__ import annotations

import os

__version__ = "0.1.0"  # of knit and the server (setup.cfg reads it; knitfab.__version__ is it)
HERE = os.path.dirname(os.path.abspath(__file__))


def commit() -> str:
    """The abbreviated commit of this ``knit``, or ``unknown``."""
    try:
        with open(os.path.join(HERE, "COMMIT")) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return git_head(os.path.dirname(HERE)) or "unknown"


def git_head(root: str) -> str | None:
    """The abbreviated HEAD commit of the git checkout at ``root`` (a worktree too), read from
    its files as ``git rev-parse --short HEAD`` would print it; None when there is none."""
    try:
        git = _git_dir(root)
        head = _read(git, "HEAD")
        if not head.startswith("ref: "):
            return head[:7]  # a detached HEAD
        ref = head[5:]
        common = os.path.join(git, _read(git, "commondir")) if os.path.exists(os.path.join(git, "commondir")) else git
        return _ref(git, common, ref)[:7]
    except (OSError, ValueError):
        return None


def _git_dir(root: str) -> str:
    git = os.path.join(root, ".git")
    if os.path.isfile(git):  # a worktree or submodule: "gitdir: <path>"
        return os.path.join(root, _read(root, ".git").removeprefix("gitdir: "))
    return git


def _ref(git: str, common: str, ref: str) -> str:
    for folder in (git, common):
        if os.path.isfile(os.path.join(folder, ref)):
            return _read(folder, ref)
    for line in _read(common, "packed-refs").splitlines():
        if line.endswith(f" {ref}"):
            return line.split(" ", 1)[0]
    raise ValueError(f"no {ref}")


def _read(folder: str, name: str) -> str:
    with open(os.path.join(folder, name)) as f:
        return f.read().strip()
