"""Data in transit: tar (and tar.gz) streams to and from a directory, at constant memory.

Both ends use this module: the server to receive uploads and send downloads, ``knit`` to push
and pull. (It imports nothing from the server.)

``unpack`` (``knit/unpack.py``) extracts an archive safely: every entry must stay inside the
Data, and is created without ever following a symlink; an unsafe, truncated or corrupt archive
is an ``ArchiveError``.

``pack`` produces the archive of a directory as it is read: entry names relative to the Data (no
``./``), regular files, symlinks (as links, never followed unless ``dereference``), and
directory entries for empty directories (so they survive a round trip; Knitfab's archives have
no directory entries at all), modes kept. The checksum of the bytes sent (MD5, or SHA-256
between our own ends: ``knit/digests.py``) is available when the stream ends, for the trailer.
Plain tar goes out in the 1 MiB blocks files are read into, hashed by a second thread while they
are sent (``knit/blocks.py``).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .blocks import HashPool
from .digests import MD5, Checksum
from .extract import ArchiveError
from .unpack import unpack

__all__ = ["Archive", "ArchiveError", "CountingReader", "pack", "unpack"]

CHUNK = 1 << 20
GZIP_LEVEL = 1  # fast: data is often already compressed, and the network is rarely the limit


class Archive:
    """The archive's bytes; ``hasher`` (of the ``checksum``) is complete once they are all read.
    ``on_read(n)`` is told of every ``n`` bytes of file content read (for progress bars)."""

    def __init__(self, root: Path | None, compressed: bool = True, dereference: bool = False, on_read=None,
                 checksum: Checksum = MD5):  # fmt: skip
        self.root = root
        self.compressed = compressed
        self.dereference = dereference
        self.on_read = on_read
        self.checksum = checksum
        self.hasher = checksum.new()

    def __iter__(self) -> Iterator[bytes]:
        """Pieces of about 1 MiB, each one's own (a copy of ``views()``)."""
        for view in self.views():
            yield bytes(view)

    def views(self) -> Iterator[memoryview | bytearray]:
        """Pieces of about 1 MiB, each valid only until the next one is asked for (a sender
        writes it out first): plain tar comes in the blocks it was read into, hashed by a second
        thread while it is sent (``knit/blocks.py``)."""
        if not self.compressed:
            pool = HashPool(hasher=self.hasher)
            yield from self._tar(pool)
            return
        squeeze = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        pending = bytearray()
        for view in self._tar(None):
            pending += squeeze.compress(view)
            if len(pending) >= CHUNK:  # few large writes, not one per tar header
                self.hasher.update(pending)
                yield pending
                pending = bytearray()
        pending += squeeze.flush()
        self.hasher.update(pending)
        yield pending

    def _tar(self, pool: HashPool | None) -> Iterator[memoryview]:
        out = _Filling(pool)
        try:
            for name, dirfd, entry in _walk(self.root, self.dereference) if self.root and self.root.is_dir() else []:
                found = _entry(self.root, name, dirfd, entry, self.dereference)
                if found is None:
                    continue  # gone since it was listed, or neither a file, a directory nor a symlink
                info, fd = found
                try:
                    yield from out.put(info.tobuf(format=tarfile.PAX_FORMAT))
                    if fd is not None:
                        yield from out.put_file(fd, info.size, self.on_read)
                finally:
                    if fd is not None:
                        os.close(fd)
            yield from out.put(_ZEROS[: tarfile.BLOCKSIZE * 2])
            yield from out.flush()
        finally:
            out.close()


_ZEROS = bytes(CHUNK)


class _Filling:
    """The archive written into blocks, one after the other, given out when full: of ``pool``,
    hashed on the side; or (without a pool) one block used again and again."""

    def __init__(self, pool: HashPool | None):
        self.pool = pool
        self.block = pool.take() if pool else bytearray(CHUNK)
        self.view, self.used = memoryview(self.block), 0

    def put(self, data: bytes) -> Iterator[memoryview]:
        data = memoryview(data)
        while data:
            n = min(len(data), len(self.block) - self.used)
            self.view[self.used : self.used + n] = data[:n]
            self.used, data = self.used + n, data[n:]
            if self.used == len(self.block):
                yield self._out()
                self._next()

    def put_file(self, fd: int, size: int, on_read=None) -> Iterator[memoryview]:
        """A file's content, read straight into the blocks, then its padding."""
        left = size
        while left:
            room = self.view[self.used : self.used + min(left, len(self.block) - self.used)]
            n = os.readv(fd, [room])
            if not n:  # the file shrank while it was sent: pad, the header is out already
                room[:] = _ZEROS[: len(room)]
                n = len(room)
            self.used, left = self.used + n, left - n
            if on_read:
                on_read(n)
            if self.used == len(self.block):
                yield self._out()
                self._next()
        yield from self.put(_ZEROS[: -size % tarfile.BLOCKSIZE])

    def flush(self) -> Iterator[memoryview]:
        if self.used:
            yield self._out()
            self.used = 0

    def close(self) -> None:
        if self.pool:
            self.pool.close()

    def _out(self) -> memoryview:
        if self.pool:
            self.pool.hash(self.block, self.used)
        return self.view[: self.used]

    def _next(self) -> None:
        if self.pool:  # the block just given out is the hasher's; the caller is done with it
            self.block = self.pool.take()
            self.view = memoryview(self.block)
        self.used = 0


def pack(
    root: Path | None, compressed: bool = True, dereference: bool = False, on_read=None, checksum: Checksum = MD5
) -> Archive:
    """The archive of ``root``'s contents (an empty archive when it does not exist). With
    ``dereference``, symlinks are replaced by what they point to; a loop is an ``ArchiveError``.
    Without it, no symlink is ever followed, even one swapped in while the archive is read: the
    walk holds each directory open and opens entries in it with ``O_NOFOLLOW``."""
    return Archive(root, compressed, dereference, on_read, checksum)


def _walk(root: Path, dereference: bool) -> Iterator[tuple[str, int, str | None]]:
    """(name in the archive, its directory's descriptor, its name there) of every entry in
    order; an empty directory comes as (its name, its own descriptor, None)."""
    top, seen = os.fspath(root), set()
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=dereference):
        if dereference:
            st = os.fstat(dirfd)
            if (st.st_dev, st.st_ino) in seen:
                raise ArchiveError(f"symlink loop at {dirpath}")
            seen.add((st.st_dev, st.st_ino))
        here = dirpath[len(top) + 1 :]
        links = [] if dereference else [d for d in dirnames if _is_link(d, dirfd)]
        dirnames[:] = sorted(d for d in dirnames if d not in links)  # never descend a symlink
        if here and not dirnames and not filenames and not links:
            yield here, dirfd, None  # an empty directory: keep it
        for name in sorted(filenames) + sorted(links):
            yield f"{here}/{name}" if here else name, dirfd, name


def _is_link(name: str, dirfd: int) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)


_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a fifo must not hang the walk


def _entry(root: Path, name: str, dirfd: int, entry: str | None, dereference: bool):
    """The header of an entry and, for a regular file, its open descriptor; None to skip it."""
    info = tarfile.TarInfo(name)
    if entry is None:
        info.type = tarfile.DIRTYPE
        return _stamped(info, os.fstat(dirfd)), None
    try:
        fd = os.open(entry, _READ if dereference else _READ | os.O_NOFOLLOW, dir_fd=dirfd)
    except OSError as e:
        if e.errno == errno.ELOOP and not dereference:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry, dir_fd=dirfd)
            return _stamped(info, os.stat(entry, dir_fd=dirfd, follow_symlinks=False)), None
        if dereference and e.errno in (errno.ENOENT, errno.ELOOP) and _is_link(entry, dirfd):
            raise ArchiveError(f"{root / name} is a dangling symlink or a symlink loop") from None
        if e.errno in (errno.ENOENT, errno.ENXIO):
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    info.size = st.st_size
    return _stamped(info, st), fd


def _stamped(info: tarfile.TarInfo, st: os.stat_result) -> tarfile.TarInfo:
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


class CountingReader:
    """Reads through to ``raw``, telling ``on_read(n)`` how much arrived (for progress bars)."""

    def __init__(self, raw: BinaryIO, on_read=None):
        self.raw = raw
        self.on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.on_read and data:
            self.on_read(len(data))
        return data

    def readinto(self, buffer) -> int:
        """Into ``buffer`` without a copy when ``raw`` can (a socket, a response)."""
        readinto = getattr(self.raw, "readinto", None)
        if readinto is None:
            data = self.raw.read(len(buffer))
            n = len(data)
            memoryview(buffer)[:n] = data
        else:
            n = readinto(buffer) or 0
        if self.on_read and n:
            self.on_read(n)
        return n
