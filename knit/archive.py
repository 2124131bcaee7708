"""Data in transit: tar (and tar.gz) streams to and from a directory, at constant memory.

Both ends use this module: the server to receive uploads and send downloads, ``knit`` to push
and pull. (It imports nothing from the server.)

``unpack`` extracts an archive safely: every entry must stay inside the Data, and is created
without ever following a symlink (``knit/extract.py``). Absolute names, ``..`` components,
links pointing outside, device and fifo entries, sparse files, and truncated or corrupt
archives (no end-of-archive blocks, no gzip CRC, trailing data) are refused with
``ArchiveError``; the caller then throws the directory away.

``pack`` produces the archive of a directory as it is read: entry names relative to the Data
(no ``./``), regular files, symlinks (as links, never followed unless ``dereference``), and
directory entries for empty directories (so they survive a round trip; Knitfab's archives have
no directory entries at all), modes kept. The MD5 of the bytes sent is available when the
stream ends, for the ``x-checksum-md5`` trailer.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .extract import ArchiveError, Tree, shown, split, unsafe

CHUNK = 1 << 20
# tarfile's stream reader copies what is left of its buffer on every read: a small buffer keeps
# that cheap (with 1 MiB, unpacking many small files took half again as long).
STREAM_BUFFER = 1 << 16
GZIP_LEVEL = 1  # fast: data is often already compressed, and the network is rarely the limit


class HashingReader:
    """Reads through to ``raw`` while hashing every byte."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.md5 = hashlib.md5()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size is not None and size >= 0 else CHUNK)
        self.md5.update(data)
        return data


def unpack(stream: BinaryIO, dest: Path, compressed: bool = True, room: Room | None = None) -> str:
    """Extract a tar (gzip-compressed when ``compressed``) from ``stream`` into ``dest``;
    returns the MD5 hex digest of the bytes read.

    The archive must be complete: tar's two end-of-archive blocks, then nothing but zero padding;
    a gzip stream must end with its CRC and size. ``room(total, coming)`` is asked before each
    entry and every ``ROOM_EVERY`` bytes of a big file, with the size the Data will have once the
    entry is written (its content plus ``BLOCKSIZE`` per entry) and the bytes of it still to
    come; it raises to refuse (too large, no disk space)."""
    reader = HashingReader(stream)
    try:
        with Tree(dest) as tree:
            source = _Gunzip(reader) if compressed else reader
            with tarfile.open(fileobj=source, mode="r|", bufsize=STREAM_BUFFER, tarinfo=_Header) as tar:
                _Extraction(tar, tree, room).run()
                _end_of_archive(tar.fileobj)
            tree.check_links()
    except ArchiveError:
        raise
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.EILSEQ):
            raise ArchiveError(f"a name in the archive cannot be stored: {e.strerror}") from None
        if e.errno is not None:
            raise  # the disk or the connection, not the archive
        raise ArchiveError(f"the archive is truncated or corrupt: {e}") from None
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as e:
        raise ArchiveError(f"the archive is truncated or corrupt: {e}") from None
    return reader.md5.hexdigest()


Room = Callable[[int, int], None]
ROOM_EVERY = 64 << 20
MAX_HEADER = 1 << 20  # a pax header or a GNU long name: real ones are a few hundred bytes
MAX_PADDING = 1 << 20  # zeros after the end-of-archive blocks (tar pads to its record size)
_EXTENDED = (
    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
)  # fmt: skip


class _Extraction:
    """Entries of ``tar`` written into ``tree``, one at a time (tarfile keeps no list of them)."""

    def __init__(self, tar: tarfile.TarFile, tree: Tree, room: Room | None):
        self.tar, self.tree, self.room = tar, tree, room
        self.total = 0

    def run(self) -> None:
        while (member := self.tar.next()) is not None:
            self.tar.members.clear()  # stream mode never looks back; a million entries stay cheap
            _check(member)
            size = member.size if member.isreg() else 0
            self.total += tarfile.BLOCKSIZE + size
            if self.room:
                self.room(self.total, size)
            self._extract(member, split(member.name))

    def _extract(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        if member.isdir():
            self.tree.directory(parts)
        elif not parts:
            raise unsafe(f"an entry of type {member.type!r} has an empty name")
        elif member.issym():
            self.tree.symlink(parts, member.linkname)
        elif member.islnk():
            self.tree.hardlink(parts, split(member.linkname) or ("",))
        else:
            self._file(member, parts)

    def _file(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        fd = self.tree.file(parts, _mode(member))
        try:
            self._copy(fd, member.size)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _copy(self, fd: int, size: int) -> None:
        source, left, since = self.tar.fileobj, size, 0
        while left:
            chunk = source.read(min(STREAM_BUFFER, left))
            if not chunk:
                raise ArchiveError("the archive is truncated: it ends in the middle of a file")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            left -= len(chunk)
            since += len(chunk)
            if self.room and since >= ROOM_EVERY:
                self.room(self.total, left)
                since = 0


class _Header(tarfile.TarInfo):
    """tarfile's header parser, made strict: a missing end-of-archive marker, a bad header in the
    middle, a sparse file or an oversized extended header is an ``ArchiveError`` (tarfile would
    end the archive quietly, expand a 124-byte entry into terabytes or read a huge header into
    memory)."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise  # a zero block: the end-of-archive marker, checked by _end_of_archive
        except tarfile.EmptyHeaderError:
            raise ArchiveError("the archive is truncated: it ends without tar's end-of-archive blocks") from None
        except tarfile.HeaderError as e:
            raise ArchiveError(f"the archive is truncated or corrupt: {e}") from None

    def _proc_member(self, tar):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _sparse(self.name)
        if self.type in _EXTENDED and self.size > MAX_HEADER:
            raise ArchiveError(f"the archive has an extended header of {self.size} bytes; at most {MAX_HEADER}")
        if self.type == tarfile.XGLTYPE:
            tar.global_header_bytes = getattr(tar, "global_header_bytes", 0) + self.size
            if tar.global_header_bytes > MAX_HEADER:
                raise ArchiveError(f"the archive's global headers are larger than {MAX_HEADER} bytes")
        return super()._proc_member(tar)

    def _proc_gnusparse_00(self, next, *_):
        raise _sparse(next.name)

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


def _sparse(name: str) -> ArchiveError:
    return ArchiveError(f"{shown(name)} is a sparse file, which uploads do not accept: archive it without --sparse")


def _end_of_archive(source) -> None:
    """tarfile stopped at a zero block: the second one must follow, then only zero padding."""
    if source.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
        raise ArchiveError("the archive is truncated or corrupt: tar's second end-of-archive block is missing")
    padding = 0
    while chunk := source.read(STREAM_BUFFER):
        padding += len(chunk)
        if chunk.count(0) != len(chunk) or padding > MAX_PADDING:
            raise ArchiveError("the archive has trailing data after its end-of-archive blocks")


class _Gunzip:
    """The decompressed bytes of a gzip stream (several members, as gzip allows), at constant
    memory however well it compresses; a stream that ends without a member's CRC and size, or
    with a wrong one, is an ``ArchiveError``."""

    def __init__(self, raw):
        self.raw = raw
        self.inflate = zlib.decompressobj(31)
        self.members = 0

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else STREAM_BUFFER
        try:
            while True:
                if self.inflate.unconsumed_tail and not self.inflate.eof:  # (at eof the tail is unused_data)
                    data = self.inflate.decompress(self.inflate.unconsumed_tail, size)
                else:
                    data = self._inflate_more(size)
                    if data is None:
                        return b""
                if data:
                    return data
        except zlib.error as e:
            if self.members > 1:
                raise ArchiveError(f"the body has trailing data after its gzip stream ({e})") from None
            raise ArchiveError(f"the gzip stream is corrupt: {e}") from None

    def _inflate_more(self, size: int) -> bytes | None:
        """Decompress the next input; None at the end of a complete stream."""
        if self.inflate.eof:
            rest = self.inflate.unused_data or self.raw.read(STREAM_BUFFER)
            if not rest:
                return None
            self.inflate = zlib.decompressobj(31)  # another gzip member follows
            self.members += 1
            return self.inflate.decompress(rest, size)
        chunk = self.raw.read(STREAM_BUFFER)
        if not chunk:
            if not self.members:
                raise ArchiveError("the body is empty: send a tar.gz archive")
            raise ArchiveError("the gzip stream is truncated: it ends without its CRC and size")
        self.members = self.members or 1
        return self.inflate.decompress(chunk, size)


def _mode(member: tarfile.TarInfo) -> int | None:
    """The "data" filter's modes: no setuid/sticky or group/other write; owner can read and write."""
    if not member.isreg():
        return None
    mode = (member.mode & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o111


def _check(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.ischr() or member.isblk() or member.isfifo():
        raise unsafe(f"{shown(name)} is a device or fifo")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise unsafe(f"{shown(name)} has the entry type {member.type!r}, which a Data cannot hold")
    if member.issym() and (member.linkname.startswith("/") or _escapes(name, member.linkname)):
        raise unsafe(f"symlink {shown(name)} points outside the Data")


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
        for name, dirfd, entry in _walk(self.root, self.dereference) if self.root and self.root.is_dir() else []:
            found = _entry(self.root, name, dirfd, entry, self.dereference)
            if found is None:
                continue  # gone since it was listed, or neither a file, a directory nor a symlink
            info, fd = found
            try:
                yield info.tobuf(format=tarfile.PAX_FORMAT)
                if fd is not None:
                    yield from self._content(fd, info.size)
            finally:
                if fd is not None:
                    os.close(fd)
        yield b"\0" * (tarfile.BLOCKSIZE * 2)

    def _content(self, fd: int, size: int) -> Iterator[bytes]:
        sent = 0
        while sent < size:
            chunk = os.read(fd, min(CHUNK, size - sent))
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
    ``dereference``, symlinks are replaced by what they point to; a loop is an ``ArchiveError``.
    Without it, no symlink is ever followed, even one swapped in while the archive is read: the
    walk holds each directory open and opens entries in it with ``O_NOFOLLOW``."""
    return Archive(root, compressed, dereference, on_read)


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
