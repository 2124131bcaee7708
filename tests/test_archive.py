"""knit.archive: streaming tar(.gz) both ways, refusing what would escape the Data."""

import hashlib
import io
import os
import subprocess
import tarfile

import pytest
from hostile import gzip_of, sparse_gnu, sparse_pax, symlink_chain, tar_of, zeros_bomb

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
    assert archive.hasher.hexdigest() == hashlib.md5(body).hexdigest()
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


# -- hostile archives (issue 9) ----------------------------------------------------------------


def refused(body, dest, compressed=False) -> str:
    with pytest.raises(ArchiveError) as caught:
        unpack(io.BytesIO(body), dest, compressed)
    return str(caught.value)


def test_a_reverse_order_symlink_chain_writes_nothing_through_its_links(tmp_path):
    dest = tmp_path / "deep" / "data"
    dest.mkdir(parents=True)
    words = refused(symlink_chain(2, "escaped"), dest)  # L2 is the directory above "deep"
    assert "'c' is already a symlink" in words
    assert not (tmp_path / "escaped").exists()


def test_links_that_resolve_outside_through_other_links_are_refused(tmp_path):
    chain = tar_of(("L1", "sym", "L0/.."), ("L0", "sym", "."))
    assert "symlink 'L1' points outside the Data" in refused(chain, tmp_path)


@pytest.mark.parametrize(
    "entries, words",
    [
        ([("d", "sym", "sub"), ("sub", "dir"), ("d/f", "file", "x")], "'d/f' goes through 'd', which is a symlink"),
        ([("f", "file", "x"), ("f/g", "file", "x")], "'f/g' goes through 'f', which is a file"),
        ([("d", "dir"), ("d", "sym", "x")], "'d' is already a directory"),
        ([("l", "sym", "x"), ("l", "file", "x")], "'l' is already a symlink"),
        ([("l", "sym", "x"), ("l", "dir")], "'l' is already a symlink"),
        ([("h", "hard", "missing")], "hardlink 'h' points to 'missing', which is not a file"),
        ([("d", "dir"), ("h", "hard", "d")], "hardlink 'h' points to 'd', which is not a file"),
        ([("x" * 10_000, "file", "x")], "(10000 characters) is too long"),
        ([("/".join(["d"] * n), "dir") for n in range(1, 2001)], "nested 257 directories deep; at most 256"),
    ],
)
def test_entries_that_cannot_be_made_safely_are_refused_clearly(tmp_path, entries, words):
    try:
        assert words in refused(tar_of(*entries), tmp_path)
    finally:  # 256 levels are more than pytest's recursive clean-up of old temporary folders takes
        subprocess.run(["rm", "-rf", *map(str, tmp_path.iterdir())], check=True)


def test_a_later_copy_of_a_file_replaces_it_and_hardlinks_share_it(tmp_path):
    unpack(io.BytesIO(tar_of(("f", "file", "old"), ("f", "file", "new"), ("h", "hard", "f"))), tmp_path, False)
    assert (tmp_path / "h").read_text() == "new" and os.stat(tmp_path / "h").st_nlink == 2


@pytest.mark.parametrize(
    "body, compressed, words",
    [
        (tar_of(("a", "file", "x" * 600), ("b", "file", "y"), end=False), False, "without tar's end-of-archive"),
        (tar_of(("a", "file", "x"), end=False) + bytes(512), False, "second end-of-archive block is missing"),
        (tar_of(("a", "file", "x")) + b"junk", False, "trailing data after its end-of-archive blocks"),
        (gzip_of(tar_of(("a", "file", "x"), end=False)), True, "without tar's end-of-archive"),
        (gzip_of(tar_of(("a", "file", "x")))[:-8], True, "without its CRC and size"),
        (gzip_of(tar_of(("a", "file", "x")))[:-8] + bytes(8), True, "incorrect data check"),
        (gzip_of(tar_of(("a", "file", "x"))) + b"junk", True, "trailing data after its gzip stream"),
        (sparse_gnu(), False, "'huge' is a sparse file"),
        (sparse_pax(), False, "'huge' is a sparse file"),
        (gzip_of(sparse_gnu()), True, "'huge' is a sparse file"),
    ],
    ids=["no-end", "one-end-block", "tar-junk", "gz-no-end", "gz-no-trailer", "gz-bad-crc", "gz-junk", "gnu-sparse",
         "pax-sparse", "gnu-sparse-gz"],
)  # fmt: skip
def test_incomplete_or_sparse_archives_are_refused(tmp_path, body, compressed, words):
    assert words in refused(body, tmp_path, compressed)
    assert not any(tmp_path.iterdir()) or not (tmp_path / "huge").exists()


def test_several_gzip_members_and_zero_padding_are_a_complete_archive(tmp_path):
    raw = tar_of(("a", "file", "x" * 5000), ("b", "file", "y"))
    unpack(io.BytesIO(gzip_of(raw[:3000]) + gzip_of(raw[3000:])), tmp_path)
    assert (tmp_path / "a").read_text() == "x" * 5000 and (tmp_path / "b").read_text() == "y"


def test_room_is_asked_with_the_size_so_far_and_what_is_coming(tmp_path):
    asked = []
    body = tar_of(("d", "dir"), ("d/a", "file", "x" * 100), ("l", "sym", "d/a"))
    unpack(io.BytesIO(body), tmp_path, False, room=lambda total, coming: asked.append((total, coming)))
    assert asked == [(512, 0), (1024 + 100, 100), (1536 + 100, 0)]


def test_room_can_stop_an_archive_before_its_entry_is_written(tmp_path):
    def room(total, coming):
        if total > 4096:
            raise ArchiveError("too big")

    with pytest.raises(ArchiveError, match="too big"):
        unpack(io.BytesIO(zeros_bomb(1, 1 << 20)), tmp_path, room=room)
    assert not (tmp_path / "zeros0").exists()


def test_a_symlink_swapped_in_while_packing_is_never_followed(tmp_path):
    """A run still writing its outputs replaces a directory by a link to the host's files while
    its Data is downloaded: the archive holds what was in the Data, never the host's file."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "d" / "e").mkdir(parents=True)
    (data / "d" / "big").write_bytes(os.urandom(3 << 20))
    (data / "d" / "e" / "f").write_text("inside")
    (outside / "e").mkdir(parents=True)
    (outside / "e" / "f").write_text("SECRET of the host")

    def swap(_n):
        if not (data / "d.old").exists():
            (data / "d").rename(data / "d.old")
            (data / "d").symlink_to(outside)

    body = b"".join(pack(data, compressed=False, on_read=swap))
    assert b"SECRET" not in body
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("d/e/f").read() == b"inside"


def test_packing_sends_links_as_links_and_skips_fifos(tmp_path):
    (tmp_path / "secret").write_text("SECRET")
    data = tmp_path / "data"
    data.mkdir()
    (data / "file-link").symlink_to(tmp_path / "secret")
    (data / "dir-link").symlink_to(tmp_path)
    os.mkfifo(data / "fifo")
    body = b"".join(pack(data, compressed=False))
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert {m.name: (m.type, m.linkname) for m in tar} == {
            "dir-link": (tarfile.SYMTYPE, str(tmp_path)),
            "file-link": (tarfile.SYMTYPE, str(tmp_path / "secret")),
        }


def test_a_highly_compressed_stream_of_gzip_members_unpacks_whole(tmp_path):
    unpack(io.BytesIO(zeros_bomb(3, 2 << 20)), tmp_path)
    assert [(tmp_path / f"zeros{n}").stat().st_size for n in range(3)] == [2 << 20] * 3


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_modes_survive_whatever_the_umask(tmp_path, umask):
    src = tree(tmp_path / "src")
    (src / "shared.txt").write_text("for all")
    (src / "shared.txt").chmod(0o644)
    body = b"".join(pack(src, compressed=False))
    dest = tmp_path / "dest"
    dest.mkdir()
    before = os.umask(umask)
    try:
        unpack(io.BytesIO(body), dest, compressed=False)
    finally:
        os.umask(before)
    assert oct((dest / "shared.txt").stat().st_mode & 0o777) == "0o644"
    assert oct((dest / "run.sh").stat().st_mode & 0o777) == "0o755"


def test_a_big_file_packs_in_blocks_that_are_each_their_own_piece(tmp_path):
    (tmp_path / "src").mkdir()
    data = os.urandom(5 * (1 << 20) + 1000)  # several 1 MiB blocks, the hashing thread behind
    (tmp_path / "src" / "big.bin").write_bytes(data)
    archive = pack(tmp_path / "src", compressed=False)
    pieces = list(archive)  # kept, not sent one by one
    body = b"".join(pieces)
    assert len(pieces) > 5 and archive.hasher.hexdigest() == hashlib.md5(body).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("big.bin").read() == data
