"""Creating a Data's entries under its root without ever following a symlink.

Every entry is created relative to an open directory, and every directory on its way is opened
from the root down with ``O_NOFOLLOW``: a symlink anywhere on an entry's path, or where the entry
itself would go, is refused, never followed, whatever order the archive made its links in. So
nothing can be written outside the root. Once everything is written, ``check_links`` makes sure
no symlink, through other symlinks, resolves outside the root either.

Names are checked before anything is created: nothing absolute, no ``..``, at most
``MAX_DEPTH`` directories deep, components of at most 255 bytes and whole names of at most
4096 (what Linux file systems hold), no NUL.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class ArchiveError(ValueError):
    """An archive that is unsafe, truncated or corrupt."""


MAX_DEPTH = 256
NAME_MAX = 255
PATH_MAX = 4096
OPEN_DIRS = 16  # per upload: 16 uploads at once hold 256 descriptors
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def unsafe(message: str) -> ArchiveError:
    return ArchiveError(f"unsafe entry in the archive: {message}")


def shown(name: str) -> str:
    """A name as error messages show it: quoted, and cut when it is very long."""
    return repr(name) if len(name) <= 120 else repr(name[:100]) + f"... ({len(name)} characters)"


def split(name: str) -> tuple[str, ...]:
    """The components of an entry's name (``./`` and repeated slashes dropped); refuses names
    that would leave the root or that no file system can hold."""
    if "\0" in name:
        raise unsafe(f"{shown(name)} has a NUL character")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if name.startswith("/") or ".." in parts:
        raise unsafe(f"{shown(name)} is not inside the Data")
    if len(parts) > MAX_DEPTH:
        raise ArchiveError(f"{shown(name)} is nested {len(parts)} directories deep; at most {MAX_DEPTH} are allowed")
    if len(os.fsencode(name)) > PATH_MAX or any(len(os.fsencode(p)) > NAME_MAX for p in parts):
        raise ArchiveError(
            f"{shown(name)} is too long: names are at most {PATH_MAX} bytes, each part at most {NAME_MAX}"
        )
    return parts


class Tree:
    """The directory entries are created in. ``close()`` it when done (it holds file descriptors)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root_fd = os.open(self.root, _DIR)
        self.open: dict[tuple[str, ...], int] = {(): self.root_fd}  # directories used lately, oldest first
        self.links: list[tuple[str, ...]] = []
        self.umask = _umask()

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    # -- entries ----------------------------------------------------------------------------------

    def directory(self, parts: tuple[str, ...]) -> None:
        """The directory (and those above it), made when missing."""
        self._dir(parts, create=True)

    def file(self, parts: tuple[str, ...], mode: int) -> int:
        """A new regular file (replacing a file of the same name), open for writing."""
        where = self._dir(parts[:-1], create=True, name="/".join(parts))
        fd = self._make(where, parts, lambda: os.open(parts[-1], _NEW, mode, dir_fd=where))
        if mode & self.umask:
            os.fchmod(fd, mode)  # the umask took some of its bits (one system call less per file otherwise)
        return fd

    def symlink(self, parts: tuple[str, ...], target: str) -> None:
        if not target or "\0" in target:
            raise unsafe(f"symlink {shown('/'.join(parts))} has an empty or invalid target")
        where = self._dir(parts[:-1], create=True, name="/".join(parts))
        self._make(where, parts, lambda: os.symlink(target, parts[-1], dir_fd=where))
        self.links.append(parts)

    def hardlink(self, parts: tuple[str, ...], target: tuple[str, ...]) -> None:
        """A second name for the file already extracted as ``target``."""
        source = None
        try:
            source = self._walk(target[:-1], create=False, name="/".join(target))
            where = self._dir(parts[:-1], create=True, name="/".join(parts))
            link = lambda: os.link(target[-1], parts[-1], src_dir_fd=source, dst_dir_fd=where, follow_symlinks=False)  # noqa: E731
            self._make(where, parts, link)
        except (FileNotFoundError, PermissionError):
            raise ArchiveError(
                f"hardlink {shown('/'.join(parts))} points to {shown('/'.join(target))}, which is not a file the"
                " archive holds before it"
            ) from None
        finally:
            if source is not None:
                os.close(source)
        if stat.S_ISLNK(os.stat(parts[-1], dir_fd=where, follow_symlinks=False).st_mode):
            self.links.append(parts)  # a second name of a symlink resolves from its own directory

    def check_links(self) -> None:
        """Refuse symlinks that resolve outside the root, however many other links they go through."""
        root = os.path.realpath(self.root)
        for parts in self.links:
            resolved = os.path.realpath(os.path.join(self.root, *parts))
            if resolved != root and not resolved.startswith(root + os.sep):
                raise unsafe(f"symlink {shown('/'.join(parts))} points outside the Data")

    # -- helpers ----------------------------------------------------------------------------------

    def _make(self, where: int, parts: tuple[str, ...], create):
        """``create()`` the entry in ``where``; a regular file of that name is replaced (the later
        entry wins, as with tar); a directory or a symlink there never is."""
        try:
            return create()
        except FileExistsError:
            kind = _kind(os.stat(parts[-1], dir_fd=where, follow_symlinks=False).st_mode)
            if kind != "file":
                raise unsafe(f"{shown('/'.join(parts))} is already a {kind} in this Data") from None
            os.unlink(parts[-1], dir_fd=where)
            return create()

    def _dir(self, parts: tuple[str, ...], create: bool, name: str = "") -> int:
        """The open directory at ``parts`` (on the way to the entry ``name``); the last
        ``OPEN_DIRS`` used stay open, so most entries cost no lookup at all."""
        fd = self.open.get(parts)
        if fd is None:
            fd = self._walk(parts, create, name or "/".join(parts))
            if len(self.open) > OPEN_DIRS:
                os.close(self.open.pop(next(key for key in self.open if key)))  # the oldest, never the root
            self.open[parts] = fd
        return fd

    def _walk(self, parts: tuple[str, ...], create: bool, name: str) -> int:
        """A new descriptor of the directory at ``parts``, from the nearest open one above it."""
        start = len(parts)
        while start and parts[:start] not in self.open:
            start -= 1
        fd = os.dup(self.open[parts[:start]])
        try:
            for i in range(start, len(parts)):
                below = self._enter(fd, parts, i, create, name)
                os.close(fd)
                fd = below
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _enter(self, fd: int, parts: tuple[str, ...], i: int, create: bool, name: str) -> int:
        try:
            return os.open(parts[i], _DIR, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(parts[i], 0o755, dir_fd=fd)
            return os.open(parts[i], _DIR, dir_fd=fd)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            kind = _kind(os.stat(parts[i], dir_fd=fd, follow_symlinks=False).st_mode)
            if i == len(parts) - 1 and "/".join(parts) == name:
                raise unsafe(f"{shown(name)} is already a {kind} in this Data") from None
            raise unsafe(f"{shown(name)} goes through {shown('/'.join(parts[: i + 1]))}, which is a {kind}") from None


def _umask() -> int:
    """The process's umask, read without changing it (Linux shows it in /proc); all bits when unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "special file"
