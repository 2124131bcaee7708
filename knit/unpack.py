"""Extracting a tar (or tar.gz) stream into a Data, safely and at the speed of the disk.

``unpack`` is what the server does with an upload and ``knit data pull -x`` with a download.
Every entry must stay inside the Data, and is created without ever following a symlink
(``knit/extract.py``). Absolute names, ``..`` components, links pointing outside, device and fifo
entries, sparse files, and truncated or corrupt archives (no end-of-archive blocks, no gzip CRC,
trailing data) are refused with ``ArchiveError``; the caller then throws the directory away.

The body is read in 1 MiB blocks hashed (``knit/digests.py``) by a second thread (``knit/blocks.py``); a file's content
is written from those blocks as they are, without a copy. tarfile parses each header (its
``TarInfo.fromtarfile``, pax and GNU long names included, made strict by ``_Header``), but not
the contents: its stream reader copies what is left of its buffer on every read.
"""

from __future__ import annotations

import errno
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .blocks import BLOCK, Blocks, HashPool, read_exactly
from .digests import MD5, Checksum
from .extract import ArchiveError, Tree, shown, split, unsafe

Room = Callable[[int, int], None]
ROOM_EVERY = 64 << 20
MAX_HEADER = 1 << 20  # a pax header or a GNU long name: real ones are a few hundred bytes
MAX_PADDING = 1 << 20  # zeros after the end-of-archive blocks (tar pads to its record size)
INFLATED = 1 << 18  # what one step of gunzip may produce (its memory, however well it compresses)
_EXTENDED = (
    tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
)  # fmt: skip


def unpack(
    stream: BinaryIO, dest: Path, compressed: bool = True, room: Room | None = None, checksum: Checksum = MD5
) -> str:
    """Extract a tar (gzip-compressed when ``compressed``) from ``stream`` into ``dest``;
    returns the hex digest (of the ``checksum``: MD5 unless given) of the bytes read.

    The archive must be complete: tar's two end-of-archive blocks, then nothing but zero padding;
    a gzip stream must end with its CRC and size. ``room(total, coming)`` is asked before each
    entry and every ``ROOM_EVERY`` bytes of a big file, with the size the Data will have once the
    entry is written (its content plus ``BLOCKSIZE`` per entry) and the bytes of it still to
    come; it raises to refuse (too large, no disk space)."""
    body = Blocks(stream, HashPool(hasher=checksum.new()))
    try:
        with Tree(dest) as tree:
            tar = _TarStream(_Gunzip(body) if compressed else body)
            _Extraction(tar, tree, room).run()
            _end_of_archive(tar)
            tree.check_links()
        return body.hexdigest()
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
    finally:
        body.close()


class _TarStream:
    """The archive's bytes, as ``TarInfo.fromtarfile`` reads headers from a ``TarFile`` (its
    ``fileobj``, ``offset``, ``pax_headers``, ``encoding`` and ``errors``), and the views
    contents are written from."""

    encoding, errors = tarfile.ENCODING, "surrogateescape"

    def __init__(self, source):
        self.source, self.fileobj = source, self
        self.pos = self.offset = 0  # where we are; where the next header is (tarfile sets it)
        self.pax_headers: dict[str, str] = {}  # global pax headers

    def tell(self) -> int:
        return self.pos

    def read1(self, size: int):
        piece = self.source.read1(size)
        self.pos += len(piece)
        return piece

    def read(self, size: int) -> bytes:
        return read_exactly(self.read1, size)

    def next(self) -> tarfile.TarInfo | None:
        """The next entry's header, its content next to read; None at the end-of-archive block."""
        self.skip(self.offset - self.pos)  # the previous content's padding (or what was left of it)
        try:
            return _Header.fromtarfile(self)
        except tarfile.EOFHeaderError:
            return None

    def skip(self, size: int) -> None:
        while size > 0:
            piece = self.read1(min(size, BLOCK))
            if not piece:
                raise ArchiveError("the archive is truncated: it ends in the middle of an entry")
            size -= len(piece)


class _Extraction:
    """Entries of ``tar`` written into ``tree``, one at a time."""

    def __init__(self, tar: _TarStream, tree: Tree, room: Room | None):
        self.tar, self.tree, self.room = tar, tree, room
        self.total = 0

    def run(self) -> None:
        while (member := self.tar.next()) is not None:
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
        left, since = size, 0
        while left:
            view = self.tar.read1(min(BLOCK, left))
            if not view:
                raise ArchiveError("the archive is truncated: it ends in the middle of a file")
            left -= len(view)
            since += len(view)
            while view:
                view = view[os.write(fd, view) :]
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


def _end_of_archive(tar: _TarStream) -> None:
    """``next()`` stopped at a zero block: the second one must follow, then only zero padding."""
    if tar.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
        raise ArchiveError("the archive is truncated or corrupt: tar's second end-of-archive block is missing")
    padding = 0
    while chunk := tar.read1(BLOCK):
        padding += len(chunk)
        if padding > MAX_PADDING or bytes(chunk).count(0) != len(chunk):
            raise ArchiveError("the archive has trailing data after its end-of-archive blocks")


class _Gunzip:
    """The decompressed bytes of a gzip stream (several members, as gzip allows), at constant
    memory however well it compresses; a stream that ends without a member's CRC and size, or
    with a wrong one, is an ``ArchiveError``."""

    def __init__(self, raw: Blocks):
        self.raw = raw
        self.inflate = zlib.decompressobj(31)
        self.members = 0

    def read1(self, size: int) -> bytes:
        size = min(size, INFLATED) if size and size > 0 else INFLATED
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
            rest = self.inflate.unused_data or self.raw.read1(BLOCK)
            if not rest:
                return None
            self.inflate = zlib.decompressobj(31)  # another gzip member follows
            self.members += 1
            return self.inflate.decompress(rest, size)
        chunk = self.raw.read1(BLOCK)
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
