"""The cache of unpacked images: one root per set of layers, bounded, never collecting a live run's."""

import pytest
from oci_helpers import entry, tar_layer

from knitfab.images.blobs import BlobStore
from knitfab.images.cache import Image, ImageCache
from knitfab.images.rootfs import LayerError


def image_of(blobs: BlobStore, name: str, content: bytes) -> str:
    """Store a one-layer image as a registry push would; its reference."""
    import json

    layer = blobs.put_bytes(tar_layer([(entry("data"), content)]))
    config = blobs.put_bytes(json.dumps({"os": "linux", "config": {"Cmd": ["x"]}}).encode())
    manifest = {
        "schemaVersion": 2,
        "config": {"digest": config},
        "layers": [{"digest": layer, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
    }
    digest = blobs.put_bytes(json.dumps(manifest).encode())
    blobs.link_manifest(name, digest, "application/vnd.oci.image.manifest.v1+json", "v1")
    return f"localhost:30503/{name}:v1"


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "registry")


def test_an_image_is_found_by_any_of_its_names_and_unpacked_once(blobs, tmp_path):
    cache = ImageCache(blobs, tmp_path / "rootfs", {"localhost:30503"}, limit=1 << 30)
    reference = image_of(blobs, "app", b"one")
    bare, ours = cache.find("app:v1"), cache.find(reference)
    assert bare.key == ours.key and cache.find("example.com/app:v1") is None and cache.find("app:v2") is None
    root = cache.rootfs(ours)
    assert (root / "data").read_bytes() == b"one"
    (root / "data").write_bytes(b"marked")
    assert (cache.rootfs(bare) / "data").read_bytes() == b"marked"  # not unpacked again


def test_least_recently_used_roots_go_first_but_never_a_live_runs(blobs, tmp_path):
    cache = ImageCache(blobs, tmp_path / "rootfs", {"localhost:30503"}, limit=2500)
    images = [cache.find(image_of(blobs, name, name.encode() * 1000)) for name in ("a", "b", "c")]
    cache.in_use = lambda: {images[0].key}
    for image in images:
        cache.rootfs(image)
    kept = sorted(p.name for p in (tmp_path / "rootfs").iterdir())
    assert kept == sorted([images[0].key, images[2].key])  # b was the oldest that no run used


def test_an_unpack_a_crash_interrupted_is_removed_and_a_bad_layer_leaves_nothing(blobs, tmp_path):
    (tmp_path / "rootfs" / ".tmp-dead").mkdir(parents=True)
    cache = ImageCache(blobs, tmp_path / "rootfs", set(), limit=1 << 30)
    assert list((tmp_path / "rootfs").iterdir()) == []
    evil = blobs.put_bytes(tar_layer([(entry("ok"), b"fine"), (entry("../escape"), b"x")]))
    bad = Image("bad:v1", "bad", {}, ((evil, ""),))
    with pytest.raises(LayerError, match=r"\.\."):
        cache.rootfs(bad)
    assert list((tmp_path / "rootfs").iterdir()) == []


def test_an_index_gives_the_manifest_of_this_machines_platform(blobs, tmp_path):
    import json
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    image_of(blobs, "multi", b"native")
    native, _ = blobs.resolve("multi", "v1")
    image_of(blobs, "multi", b"foreign")
    foreign, _ = blobs.resolve("multi", "v1")
    index = {"schemaVersion": 2, "manifests": [
        {"digest": foreign, "platform": {"os": "linux", "architecture": "s390x" if arch != "s390x" else "arm64"}},
        {"digest": native, "platform": {"os": "linux", "architecture": arch}},
    ]}  # fmt: skip
    blobs.link_manifest(
        "multi", blobs.put_bytes(json.dumps(index).encode()), "application/vnd.oci.image.index.v1+json", "all"
    )
    cache = ImageCache(blobs, tmp_path / "rootfs", set(), limit=1 << 30)
    assert (cache.rootfs(cache.find("multi:all")) / "data").read_bytes() == b"native"
