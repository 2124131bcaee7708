"""The secrets around a server: its token file, and the CA ``knit`` trusts (issue 9 point 11)."""

import contextlib
import logging
import shutil

import certifi
import pytest
from fake_runner import FakeRunner
from helpers import self_signed_cert

from knit.client import KnitClient
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout


@contextlib.contextmanager
def serving(tmp_path, **config):
    data_dir = tmp_path / "kf"
    srv = KnitfabServer(Config(port=0, data_dir=data_dir, **config), runner=FakeRunner(Layout(data_dir)))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "mode, warned", [(0o644, True), (0o640, True), (0o600, False), (0o400, False)], ids=["644", "640", "600", "400"]
)
def test_a_token_file_others_can_read_gets_a_warning(tmp_path, caplog, mode, warned):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(mode)
    caplog.set_level(logging.WARNING, logger="knitfab.server")
    with serving(tmp_path, token_file=token):
        pass
    warnings = [r.getMessage() for r in caplog.records if "token file" in r.getMessage()]
    assert bool(warnings) == warned, warnings
    if warned:
        assert f"chmod 600 {token}" in warnings[0]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_knit_trusts_the_handouts_ca_whatever_requests_ca_bundle_says(tmp_path, monkeypatch):
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # public CAs only: not ours
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("1")
    with serving(tmp_path, cert=cert, key=key) as srv:
        client = KnitClient(srv.url, ca=cert.read_bytes())
        try:
            assert client.find_data() == []
            pushed = client.push_dir(tmp_path / "data", ["k:v"])  # the streaming path, then JSON
            assert [d["knitId"] for d in client.find_data(["k:v"])] == [pushed["knitId"]]
        finally:
            client.close()
