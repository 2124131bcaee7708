"""knit.archive: streaming tar(.gz) both ways, refusing what would escape the Data."""

import hashlib
import io
import os
import tarfile

import pytest

from knit.archive import ArchiveError, pack, unpack


def tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "sub" / "link").symlink_to("../a.txt")
    (root / "sub" / "deeper" / "c").write_text("")
    return root


def snapshot(root):
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", any(p.iterdir()))
        else:
            out[rel] = ("file", p.read_bytes(), oct(p.stat().st_mode & 0o777))
    return out


@pytest.mark.parametrize("compressed", [True, False])
def test_round_trip_keeps_files_links_empty_dirs_and_modes(tmp_path, compressed):
    src = tree(tmp_path / "src")
    archive = pack(src, compressed)
    body = b"".join(archive)
    assert archive.md5.hexdigest() == hashlib.md5(body).hexdigest()
    dest = tmp_path / "dest"
    dest.mkdir()
    assert unpack(io.BytesIO(body), dest, compressed) == hashlib.md5(body).hexdigest()
    assert snapshot(dest) == snapshot(src)


def test_names_are_relative_without_dot_slash(tmp_path):
    body = b"".join(pack(tree(tmp_path / "src")))
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = tar.getnames()
    assert "a.txt" in names and "sub/b.bin" in names and "empty" in names
    assert not any(n.startswith(("/", "./")) for n in names)
    assert "sub" not in names  # only empty directories get an entry


def test_a_missing_directory_packs_as_an_empty_archive(tmp_path):
    body = b"".join(pack(tmp_path / "nothing"))
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert tar.getnames() == []


def evil(kind, name, linkname=""):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.mark.parametrize(
    "body",
    [
        evil(tarfile.REGTYPE, "/abs"),
        evil(tarfile.REGTYPE, "x/../../up"),
        evil(tarfile.SYMTYPE, "l", "/etc"),
        evil(tarfile.SYMTYPE, "a/b/l", "../../../x"),
        evil(tarfile.LNKTYPE, "h", "../x"),
        evil(tarfile.CHRTYPE, "dev"),
        evil(tarfile.FIFOTYPE, "fifo"),
        b"\x00" * 10 + b"garbage",
    ],
)
def test_unsafe_or_corrupt_archives_are_refused(tmp_path, body):
    with pytest.raises(ArchiveError):
        unpack(io.BytesIO(body), tmp_path, compressed=False)
    assert not (tmp_path.parent / "up").exists() and not (tmp_path.parent / "x").exists()


def test_links_inside_the_data_are_fine(tmp_path):
    unpack(io.BytesIO(evil(tarfile.SYMTYPE, "a/b/l", "../c")), tmp_path, compressed=False)
    assert os.readlink(tmp_path / "a" / "b" / "l") == "../c"
