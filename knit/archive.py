"""Data in transit: tar (and tar.gz) streams to and from a directory, at constant memory.

Both ends use this module: the server to receive uploads and send downloads, ``knit`` to push
and pull. (It imports nothing from the server.)

``unpack`` extracts an archive safely: every entry must stay inside the Data. Absolute names,
``..`` components, links pointing outside, device and fifo entries, and truncated or corrupt
archives are refused with ``ArchiveError``; the caller then throws the directory away.

``pack`` produces the archive of a directory as it is read: entry names relative to the Data
(no ``./``), regular files, symlinks, and directory entries for empty directories (so they
survive a round trip; Knitfab's archives have no directory entries at all), modes kept. The
MD5 of the bytes sent is available when the stream ends, for the ``x-checksum-md5`` trailer.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class ArchiveError(ValueError):
    """An archive that is unsafe, truncated or corrupt."""


CHUNK = 1 << 20
# tarfile's stream reader copies what is left of its buffer on every read: a small buffer keeps
# that cheap (with 1 MiB, unpacking many small files took half again as long).
STREAM_BUFFER = 1 << 16
GZIP_LEVEL = 1  # fast: data is often already compressed, and the network is rarely the limit


class HashingReader:
    """Reads through to ``raw`` while hashing every byte; ``drain`` reads what is left."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.md5 = hashlib.md5()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size is not None and size >= 0 else CHUNK)
        self.md5.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def unpack(stream: BinaryIO, dest: Path, compressed: bool = True) -> str:
    """Extract a tar (gzip-compressed when ``compressed``) from ``stream`` into ``dest``;
    returns the MD5 hex digest of the bytes read."""
    reader = HashingReader(stream)
    try:
        guard = _Guard()
        with tarfile.open(fileobj=reader, mode="r|gz" if compressed else "r|", bufsize=STREAM_BUFFER) as tar:
            for member in tar:
                tar.extract(member, dest, filter=guard)
        reader.drain()  # what follows the end-of-archive blocks still counts for the checksum
    except ArchiveError:
        raise
    except tarfile.FilterError as e:
        raise ArchiveError(f"unsafe entry in the archive: {e}") from None
    except OSError as e:
        if e.errno is not None:
            raise  # the disk or the connection, not the archive
        raise ArchiveError(f"the archive is truncated or corrupt: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as e:
        raise ArchiveError(f"the archive is truncated or corrupt: {e}") from None
    return reader.md5.hexdigest()


class _Guard:
    """tarfile's "data" filter, with its realpath checks only where they can matter.

    Names are checked first (nothing absolute, no ``..``, no devices or fifos). A symlink could
    still redirect a later entry outside, so links, and every entry under a symlink extracted
    earlier, get the full "data" filter; a plain file in plain directories cannot escape, and
    skips its realpath calls (most of the time of unpacking many small files)."""

    def __init__(self):
        self.links: set[str] = set()

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        _check(member)
        if member.issym() or member.islnk() or self._under_link(member.name):
            member = tarfile.data_filter(member, dest)
        else:
            member = member.replace(uid=None, gid=None, uname=None, gname=None, mode=_mode(member), deep=False)
        if member.issym():
            self.links.add(member.name.rstrip("/"))
        return member

    def _under_link(self, name: str) -> bool:
        parts = name.rstrip("/").split("/")
        return any("/".join(parts[:i]) in self.links for i in range(1, len(parts)))


def _mode(member: tarfile.TarInfo) -> int | None:
    """The "data" filter's modes: no setuid/sticky or group/other write; owner can read and write."""
    if not member.isreg():
        return None
    mode = (member.mode & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o111


def _check(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        raise ArchiveError(f"unsafe entry in the archive: {name!r} is not inside the Data")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"unsafe entry in the archive: {name!r} is a device or fifo")
    if member.issym() and (member.linkname.startswith("/") or _escapes(name, member.linkname)):
        raise ArchiveError(f"unsafe entry in the archive: symlink {name!r} points outside the Data")


def _escapes(name: str, target: str) -> bool:
    depth = len([p for p in name.split("/")[:-1] if p not in ("", ".")])
    for part in target.split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


class Archive:
    """An iterable of the archive's bytes; ``md5`` is complete once it is exhausted.
    ``on_read(n)`` is told of every ``n`` bytes of file content read (for progress bars)."""

    def __init__(self, root: Path | None, compressed: bool = True, dereference: bool = False, on_read=None):
        self.root = root
        self.compressed = compressed
        self.dereference = dereference
        self.on_read = on_read
        self.md5 = hashlib.md5()

    def __iter__(self) -> Iterator[bytes]:
        squeeze = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if self.compressed else None
        pending = bytearray()
        for block in self._tar():
            pending += squeeze.compress(block) if squeeze else block
            if len(pending) >= CHUNK:  # few large writes, not one per tar header
                yield self._sent(pending)
                pending = bytearray()
        if squeeze:
            pending += squeeze.flush()
        if pending:
            yield self._sent(pending)

    def _sent(self, data: bytearray) -> bytes:
        self.md5.update(data)
        return bytes(data)

    def _tar(self) -> Iterator[bytes]:
        for path in _walk(self.root, self.dereference) if self.root and self.root.is_dir() else []:
            info = _info(self.root, path, self.dereference)
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            if info.isreg():
                yield from self._content(path, info.size)
        yield b"\0" * (tarfile.BLOCKSIZE * 2)

    def _content(self, path: Path, size: int) -> Iterator[bytes]:
        sent = 0
        with open(path, "rb") as f:
            while sent < size:
                chunk = f.read(min(CHUNK, size - sent))
                if not chunk:  # the file shrank while it was sent: pad, the header is out already
                    chunk = b"\0" * min(CHUNK, size - sent)
                sent += len(chunk)
                if self.on_read:
                    self.on_read(len(chunk))
                yield chunk
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            yield b"\0" * (tarfile.BLOCKSIZE - remainder)


def pack(root: Path | None, compressed: bool = True, dereference: bool = False, on_read=None) -> Archive:
    """The archive of ``root``'s contents (an empty archive when it does not exist). With
    ``dereference``, symlinks are replaced by what they point to; a loop is an ``ArchiveError``."""
    return Archive(root, compressed, dereference, on_read)


def _walk(root: Path, dereference: bool) -> Iterator[Path]:
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=dereference):
        here = Path(dirpath)
        if dereference:
            st = here.stat()
            if (st.st_dev, st.st_ino) in seen:
                raise ArchiveError(f"symlink loop at {here}")
            seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        if here != root and not dirnames and not filenames:
            yield here  # an empty directory: keep it
        links = [] if dereference else sorted(d for d in dirnames if (here / d).is_symlink())
        for name in sorted(filenames) + links:
            yield here / name


def _info(root: Path, path: Path, dereference: bool) -> tarfile.TarInfo:
    try:
        st = path.stat() if dereference else path.lstat()
    except FileNotFoundError:
        raise ArchiveError(f"{path} is a dangling symlink") from None
    info = tarfile.TarInfo(path.relative_to(root).as_posix())
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    else:
        info.size = st.st_size
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
