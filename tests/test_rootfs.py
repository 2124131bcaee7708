"""Unpacking image layers: whiteouts and links applied, hostile layers refused without harm."""

import io
import os
import stat
import tarfile

import pytest
from oci_helpers import entry, tar_layer

from knitfab.images.rootfs import LayerError, Unpacker

DIR, SYM, LNK = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


@pytest.fixture
def outside(tmp_path):
    """A directory beside the root that no layer may touch."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("keep")
    return tmp_path / "outside"


def unpack(tmp_path, *layers):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    unpacker = Unpacker(root)
    try:
        for layer in layers:
            unpacker.apply(io.BytesIO(layer))
    finally:
        unpacker.close()
    return root


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_files_dirs_symlinks_and_hardlinks_are_made(tmp_path):
    layer = tar_layer([
        entry("etc", DIR, mode=0o755), (entry("etc/motd", mode=0o640), b"hi"),
        entry("etc/link", SYM, "motd"), entry("etc/hard", LNK, "etc/motd"),
        (entry("./usr/bin/tool", mode=0o4755), b"#!"), entry("dev/null", tarfile.CHRTYPE),
    ])  # fmt: skip
    root = unpack(tmp_path, layer)
    assert (root / "etc/motd").read_text() == "hi" and stat.S_IMODE((root / "etc/motd").stat().st_mode) == 0o640
    assert os.readlink(root / "etc/link") == "motd"
    assert (root / "etc/hard").stat().st_ino == (root / "etc/motd").stat().st_ino
    assert stat.S_IMODE((root / "usr/bin/tool").stat().st_mode) == 0o755  # set-user-ID dropped
    assert not (root / "dev/null").exists()  # devices are the sandbox's own


def test_whiteouts_and_opaque_directories_hide_lower_layers(tmp_path):
    lower = tar_layer([(entry("a/1"), b"1"), (entry("a/2"), b"2"), (entry("b/x"), b"x"), (entry("c"), b"c")])
    upper = tar_layer([(entry("a/3"), b"3"), entry("a/.wh..wh..opq"), entry(".wh.b"), (entry("c"), b"new")])
    root = unpack(tmp_path, lower, upper)
    assert tree(root) == ["a", "a/3", "c"]
    assert (root / "c").read_text() == "new"


def test_an_entry_under_a_symlink_is_refused_and_nothing_lands_outside(tmp_path, outside):
    layer = tar_layer([entry("evil", SYM, str(outside)), (entry("evil/owned"), b"x")])
    with pytest.raises(LayerError, match="symlink"):
        unpack(tmp_path, layer)
    assert sorted(os.listdir(outside)) == ["secret"]


def test_a_symlink_from_a_lower_layer_is_not_followed_by_an_upper_one(tmp_path, outside):
    lower = tar_layer([entry("etc", SYM, str(outside))])
    upper = tar_layer([(entry("etc/secret"), b"overwritten")])
    with pytest.raises(LayerError):
        unpack(tmp_path, lower, upper)
    assert (outside / "secret").read_text() == "keep"


def test_a_file_replaces_a_symlink_instead_of_writing_through_it(tmp_path, outside):
    lower = tar_layer([entry("x", SYM, str(outside / "secret"))])
    upper = tar_layer([(entry("x"), b"mine")])
    root = unpack(tmp_path, lower, upper)
    assert (root / "x").read_text() == "mine" and not (root / "x").is_symlink()
    assert (outside / "secret").read_text() == "keep"


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "a/../b"])
def test_dot_dot_in_a_name_is_refused(tmp_path, outside, name):
    with pytest.raises(LayerError, match=r"\.\."):
        unpack(tmp_path, tar_layer([(entry(name), b"x")]))
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("name", ["../.wh.outside", "a/.wh..."])
def test_a_whiteout_outside_the_root_is_refused(tmp_path, outside, name):
    lower = tar_layer([(entry("a/f"), b"f")])
    with pytest.raises(LayerError):
        unpack(tmp_path, lower, tar_layer([entry(name)]))
    assert (outside / "secret").read_text() == "keep"


@pytest.mark.parametrize("target", ["../outside/secret", "/etc/passwd", "ln/secret"])
def test_a_hardlink_to_outside_the_image_is_refused(tmp_path, outside, target):
    layer = tar_layer([entry("ln", SYM, str(outside)), entry("stolen", LNK, target)])
    with pytest.raises(LayerError):
        unpack(tmp_path, layer)
    assert outside.joinpath("secret").stat().st_nlink == 1
    assert not (tmp_path / "root" / "stolen").exists()


def test_a_layer_that_is_not_a_tar_is_refused(tmp_path):
    with pytest.raises(LayerError, match="tar"):
        unpack(tmp_path, b"\x1f\x8b not really gzip")


def test_a_layer_is_streamed_never_held_in_memory(tmp_path):
    import gzip
    import tracemalloc

    big = tmp_path / "layer.tar.gz"
    with gzip.open(big, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = entry("big.bin")
        info.size = 32 << 20
        tar.addfile(info, io.BytesIO(os.urandom(1 << 10) * (32 << 10)))
    (tmp_path / "root").mkdir()
    unpacker = Unpacker(tmp_path / "root")
    tracemalloc.start()
    with open(big, "rb") as f:
        unpacker.apply(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    unpacker.close()
    assert (tmp_path / "root" / "big.bin").stat().st_size == 32 << 20
    assert peak < 8 << 20, f"{peak} bytes held while unpacking a 32 MiB layer"
