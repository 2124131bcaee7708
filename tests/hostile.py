"""Hand-made archives of the kinds an attacker sends (issue 9): every entry exactly as written."""

from __future__ import annotations

import io
import tarfile
import zlib

TIB = 1 << 40


def tar_of(*entries: tuple, end: bool = True) -> bytes:
    """An uncompressed tar of ``(name, kind, arg)`` entries, in order: kind ``file`` (arg: the
    content), ``dir``, ``sym`` or ``hard`` (arg: the link's target). Without ``end``, the
    archive stops right after its last member, as if the client had stopped there."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, *arg in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                content = arg[0].encode() if isinstance(arg[0], str) else arg[0]
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            info.linkname = arg[0] if arg else ""
            tar.addfile(info)
        members = buf.tell()
    return buf.getvalue() if end else buf.getvalue()[:members]


def symlink_chain(levels: int, target: str) -> bytes:
    """The reverse-order chain: ``c → L<n>/target``, ``L<n> → L<n-1>/..``, ..., ``L0 → .``, then
    a regular file ``c``. Each link looks harmless when it is made; together ``L<n>`` is ``n``
    directories above the Data, and writing ``c`` follows them all."""
    links = [("c", "sym", f"L{levels}/{target}")]
    links += [(f"L{i}", "sym", f"L{i - 1}/..") for i in range(levels, 0, -1)]
    return tar_of(*links, ("L0", "sym", "."), ("c", "file", "written through the links\n"))


def sparse_gnu(size: int = 10 * TIB) -> bytes:
    """A GNU sparse member (type ``S``) of ``size`` bytes with no data: 124 bytes once gzipped."""
    info = tarfile.TarInfo("huge")
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[483:495] = tarfile.itn(size, 12, tarfile.GNU_FORMAT)  # the real size
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % (sum(header) & 0o777777)
    return bytes(header) + bytes(1024)


def sparse_pax(size: int = 10 * TIB) -> bytes:
    """The same as a PAX (GNU 1.0) sparse file: a one-block map, no data."""
    info = tarfile.TarInfo("huge")
    info.size = tarfile.BLOCKSIZE
    info.pax_headers = {
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "huge", "GNU.sparse.realsize": str(size),
    }  # fmt: skip
    sparse_map = b"1\n0\n0\n".ljust(tarfile.BLOCKSIZE, b"\0")
    return info.tobuf(format=tarfile.PAX_FORMAT) + sparse_map + bytes(1024)


def gzip_of(raw: bytes) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    return squeeze.compress(raw) + squeeze.flush()


def zeros_bomb(files: int, each: int) -> bytes:
    """A tar.gz of ``files`` files of ``each`` zero bytes (a whole number of MiB): the gzip bomb.
    Built of gzip members (as gzip allows), one MiB of zeros compressed once and repeated, so a
    GiB costs a MiB and no time."""
    mib = gzip_of(bytes(1 << 20))
    out = []
    for n in range(files):
        info = tarfile.TarInfo(f"zeros{n}")
        info.size = each
        out.append(gzip_of(info.tobuf(format=tarfile.PAX_FORMAT)) + mib * (each >> 20))
    return b"".join(out) + gzip_of(bytes(1024))
