"""Unpack image layers into a root filesystem, safely: a layer is untrusted input, like an upload.

Each layer is read as one tar stream (gzip or plain), entry after entry, file contents copied in
1 MiB pieces: a layer is never held in memory, however well it compresses. Every entry is
created relative to a directory file descriptor reached component by component with
``O_NOFOLLOW``, so no symlink is ever followed while creating, linking or removing: an entry
under a symlink, a ``..`` anywhere, or a hardlink whose target is not already inside the tree
refuses the layer (``LayerError``).

OCI/AUFS whiteouts apply to what lower layers made: ``.wh.NAME`` removes ``NAME``,
``.wh..wh..opq`` empties its directory. Device nodes and FIFOs are skipped (the sandbox has its
own ``/dev``), set-user/group-ID bits are dropped, and files are owned by the server's user (in
the sandbox's user namespace they belong to the run's user).
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from .blobs import StorageError, check_free_disk

PIECE = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DISK_CHECK = 64 << 20  # look at the free disk after this many bytes written

Parts = tuple[str, ...]


class LayerError(Exception):
    """A layer that cannot be applied safely; the message names the entry."""


def split(name: str) -> Parts:
    """An entry name as path components inside the root; ``..`` is refused, ``/`` and ``.`` dropped."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"the entry {name!r} climbs out of the image with '..'")
    return parts


class Unpacker:
    """Applies layers, lowest first, onto the directory ``root`` (opened once, by descriptor)."""

    def __init__(self, root: Path, reserve: int = 0):
        self.root = Path(root)
        self.reserve = reserve
        self.root_fd = os.open(self.root, DIR_FLAGS)
        self.written = 0  # bytes of file contents, for the cache's size bound
        self._dirs: dict[Parts, int] = {}
        self._layer_made: set[Parts] = set()
        self._checked = 0

    def close(self) -> None:
        self._forget_dirs()
        os.close(self.root_fd)

    def apply(self, stream: BinaryIO) -> None:
        """One layer (a tar stream, maybe gzipped), entry by entry."""
        self._layer_made = set()
        try:
            with tarfile.open(fileobj=_decompressed(stream), mode="r|", bufsize=PIECE) as tar:
                for member in tar:
                    self._entry(tar, member)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise LayerError(f"the layer is not a readable tar stream: {str(e).splitlines()[0]}") from None

    # -- entries --------------------------------------------------------------------------------

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = split(member.name)
        if not parts:
            return  # the root itself
        if len(self._dirs) > 512:
            self._forget_dirs()  # here, never while a caller holds a cached descriptor
        base = parts[-1]
        if base == OPAQUE:
            self._opaque(parts[:-1])
        elif base.startswith(WHITEOUT):
            self._whiteout(parts[:-1], base[len(WHITEOUT) :], member.name)
        elif member.isdir():
            self._make_dir(parts, member.mode)
        elif member.isreg():
            self._make_file(tar, member, parts)
        elif member.issym():
            self._replace(parts, lambda d, n: os.symlink(member.linkname, n, dir_fd=d))
        elif member.islnk():
            self._make_hardlink(parts, member)
        # devices and FIFOs: skipped, the sandbox mounts its own /dev
        if member.type in tarfile.SUPPORTED_TYPES:
            self._layer_made.add(parts)

    def _make_dir(self, parts: Parts, mode: int) -> None:
        parent = self._dir(parts[:-1])
        existing = _lstat(parent, parts[-1])
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            self._remove(parent, parts[-1], existing, parts)
            existing = None
        if existing is None:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        try:
            os.fchmod(fd, _dir_mode(mode))
        finally:
            os.close(fd)

    def _make_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts) -> None:
        source = tar.extractfile(member)
        fd = self._replace(parts, lambda d, n: os.open(n, FILE_FLAGS, 0o600, dir_fd=d))
        try:
            while piece := source.read(PIECE):
                _write_all(fd, piece)
                self._count(len(piece))
            os.fchmod(fd, member.mode & 0o777)
        finally:
            os.close(fd)

    def _make_hardlink(self, parts: Parts, member: tarfile.TarInfo) -> None:
        target = split(member.linkname)
        if not target:
            raise LayerError(f"the hardlink {member.name!r} points at the image's root")
        source_dir = self._dir(target[:-1], create=False, entry=member.linkname)
        if _lstat(source_dir, target[-1]) is None:
            raise LayerError(f"the hardlink {member.name!r} points at {member.linkname!r}, which is not in the image")

        def link(d: int, n: str) -> None:
            os.link(target[-1], n, src_dir_fd=source_dir, dst_dir_fd=d, follow_symlinks=False)

        self._replace(parts, link)

    def _replace(self, parts: Parts, create):
        """Create a non-directory entry with ``create(dir_fd, name)``, removing what was there."""
        parent = self._dir(parts[:-1])
        existing = _lstat(parent, parts[-1])
        if existing is not None:
            self._remove(parent, parts[-1], existing, parts)
        return create(parent, parts[-1])

    # -- whiteouts ------------------------------------------------------------------------------

    def _whiteout(self, parent_parts: Parts, name: str, entry: str) -> None:
        if name in ("", ".", "..") or "/" in name:
            raise LayerError(f"the whiteout {entry!r} names no entry")
        if parent_parts + (name,) in self._layer_made:
            return  # a whiteout hides lower layers only
        parent = self._dir(parent_parts, create=False, missing_ok=True)
        existing = None if parent is None else _lstat(parent, name)
        if existing is not None:
            self._remove(parent, name, existing, parent_parts + (name,))

    def _opaque(self, parts: Parts) -> None:
        folder = self._dir(parts, create=False, missing_ok=True)
        if folder is None:
            return
        for name in os.listdir(folder):
            if parts + (name,) not in self._layer_made:
                existing = _lstat(folder, name)
                if existing is not None:
                    self._remove(folder, name, existing, parts + (name,))

    def _remove(self, parent: int, name: str, existing: os.stat_result, parts: Parts) -> None:
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(name, dir_fd=parent)  # fd-based: never follows a symlink inside
            for key in [key for key in self._dirs if key[: len(parts)] == parts]:
                os.close(self._dirs.pop(key))  # descriptors into the removed tree
        else:
            os.unlink(name, dir_fd=parent)

    # -- directories by descriptor ------------------------------------------------------------------

    def _dir(self, parts: Parts, create: bool = True, missing_ok: bool = False, entry: str = "") -> int | None:
        """A descriptor of the directory ``parts`` under the root, walked without following
        symlinks; missing directories are made when ``create``."""
        if not parts:
            return self.root_fd
        if parts in self._dirs:
            return self._dirs[parts]
        parent = self._dir(parts[:-1], create, missing_ok, entry)
        if parent is None:
            return None
        try:
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if missing_ok:
                return None
            if not create:
                raise LayerError(f"{entry or '/'.join(parts)!r} is not in the image") from None
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise LayerError(f"{'/'.join(parts)!r} is a symlink or a file: no entry may be made under it") from None
            raise
        self._dirs[parts] = fd
        return fd

    def _forget_dirs(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _count(self, size: int) -> None:
        self.written += size
        if self.written - self._checked >= DISK_CHECK:
            self._checked = self.written
            try:
                check_free_disk(self.root, 0, self.reserve)
            except StorageError as e:
                raise LayerError(e.message) from None


def read_file(root: Path, path: str, limit: int = 1 << 20) -> bytes | None:
    """A small file of an unpacked root (``/etc/passwd``), never through a symlink; None if absent."""
    parts = split(path)
    fds = [os.open(root, DIR_FLAGS)]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
        fds.append(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fds[-1]))
        return os.read(fds[-1], limit)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _decompressed(stream: BinaryIO) -> BinaryIO:
    """The layer's tar bytes. ``gzip.GzipFile`` inflates at most what each read asks for, so a
    gzip bomb cannot fill memory (tarfile's own ``r|gz`` inflates whole input blocks at once)."""
    head = stream.read(6)
    stream.seek(-len(head), os.SEEK_CUR)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    for magic, name in ((b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ", "xz"), (b"BZh", "bzip2")):
        if head.startswith(magic):
            raise LayerError(f"the layer is {name}-compressed; push it gzip-compressed or plain")
    return stream


def _lstat(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _dir_mode(mode: int) -> int:
    # Without root, the server must still be able to write lower layers' directories and remove them.
    return (mode & 0o1777) | (0o700 if os.geteuid() else 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
