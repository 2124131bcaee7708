"""How ``knit`` moves Data: plain tar with our server (it lists it at ``/api/x/formats``, and
answers ``Accept: application/x-tar``), tar.gz with a Knitfab server, the MD5 trailer both ways."""

from __future__ import annotations

import os
import shutil

import pytest
from fake_runner import FakeRunner
from helpers import self_signed_cert
from knitfab_like import without_extensions

import knit
from knit.client import GZIP, TAR, is_tar
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout


@pytest.fixture
def knitfab_like(server):
    with without_extensions(server.url) as url:
        yield url


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    (root / "sub").mkdir(parents=True)
    (root / "train.csv").write_text("a,b\n1,2\n")
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4096)
    return root


def test_our_server_takes_plain_tar_and_a_knitfab_server_gets_tar_gz(server, knitfab_like):
    assert knit.KnitClient(server.url)._upload_format()[0] == TAR
    assert knit.KnitClient(knitfab_like)._upload_format()[0] == GZIP


def test_a_push_in_plain_tar_is_the_same_data(server, dataset, tmp_path):
    client = knit.KnitClient(server.url)
    knit_id = client.push_dir(dataset, ["type:dataset"])["knitId"]
    target = client.pull(knit_id, tmp_path / "out", extract=True)
    assert tree(target) == tree(dataset)


def test_a_pull_gets_plain_tar_from_ours_and_tar_gz_from_knitfab(server, knitfab_like, dataset, tmp_path):
    knit_id = knit.KnitClient(server.url).push_dir(dataset)["knitId"]
    for url, plain in ((server.url, True), (knitfab_like, False)):
        client = knit.KnitClient(url)
        with client.download(knit_id, negotiate=True) as resp:
            assert is_tar(resp) is plain
            resp.read()
        target = client.pull(knit_id, tmp_path / f"out-{plain}", extract=True)
        assert tree(target) == tree(dataset)


def test_a_saved_pull_is_tar_gz_even_from_ours(server, dataset, tmp_path):
    client = knit.KnitClient(server.url)
    knit_id = client.push_dir(dataset)["knitId"]
    saved = client.pull(knit_id, tmp_path / "out")
    assert saved.name.endswith(".tar.gz") and saved.read_bytes()[:2] == b"\x1f\x8b"


def test_a_knitfab_client_still_gets_tar_gz(server, dataset):
    knit_id = knit.KnitClient(server.url).push_dir(dataset)["knitId"]
    with knit.KnitClient(server.url).download(knit_id) as resp:  # no Accept: Knitfab's knit
        assert resp.getheader("Content-Type") == GZIP and resp.read(2) == b"\x1f\x8b"
        resp.read()
        assert len(resp.trailers["x-checksum-md5"]) == 32


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_over_tls_a_data_of_many_blocks_goes_both_ways_whole(tmp_path):
    """Blocks are read into and written from as they are (readinto, one large sendall): TLS too."""
    cert, key = self_signed_cert(tmp_path)
    data_dir = tmp_path / "server"
    server = KnitfabServer(Config(port=0, data_dir=data_dir, cert=cert, key=key), runner=FakeRunner(Layout(data_dir)))
    server.start()
    try:
        dataset = tmp_path / "dataset"
        dataset.mkdir()
        (dataset / "weights.bin").write_bytes(os.urandom(3 * (1 << 20) + 777))
        client = knit.KnitClient(server.url, ca=cert.read_bytes())
        knit_id = client.push_dir(dataset)["knitId"]
        assert tree(client.pull(knit_id, tmp_path / "out", extract=True)) == tree(dataset)
    finally:
        server.stop()
