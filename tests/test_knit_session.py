"""The client's HTTP calls (knit/session.py over knit/http1.py, not requests): TLS with the
profile's CA whatever the environment says, keep-alive connections dropped when the server has
closed them, timeouts and unreachable servers in Knitfab's words."""

import shutil
import socket
import threading

import certifi
import pytest
import yaml
from helpers import self_signed_cert, wait_for

from knit import KnitClient, KnitError
from knit.profiles import parse_profile
from knit.session import with_query
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout


@pytest.fixture
def tls_server(tmp_path):
    from fake_runner import FakeRunner

    cert, key = self_signed_cert(tmp_path)
    data_dir = tmp_path / "kf"
    srv = KnitfabServer(Config(port=0, data_dir=data_dir, cert=cert, key=key), runner=FakeRunner(Layout(data_dir)))
    srv.start()
    yield srv
    srv.stop()


def handout_client(server) -> KnitClient:
    handout = yaml.safe_load((server.config.data_dir / "handout" / "knitprofile").read_text())
    return KnitClient.from_profile_object(parse_profile(handout, "handout"))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_trusts_the_profiles_ca_whatever_the_environment_names(tls_server, tmp_path, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, certifi.where())  # public CAs only: the server's CA is not among them
    client = handout_client(tls_server)
    try:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "a").write_text("b")
        pushed = client.push_dir(tmp_path / "d", ["t:1"])
        assert [d["knitId"] for d in client.find_data(["t:1"])] == [pushed["knitId"]]
    finally:
        client.close()
    stranger = KnitClient(tls_server.url)  # no CA: the self-signed certificate is refused
    with pytest.raises(KnitError, match=r"cannot connect to https://127.0.0.1:\d+/api: .*CERTIFICATE_VERIFY_FAILED"):
        stranger.find_data()


def test_calls_share_one_connection(server):
    client = KnitClient(server.url)
    try:
        client.find_data()
        (conn,) = client.session._idle
        client.find_plans()
        client.find_runs()
        assert client.session._idle == [conn] and conn.sock is not None
    finally:
        client.close()
    assert conn.sock is None


class OneAnswerPerConnection:
    """A server that answers each connection once, as if keeping it alive, then closes it."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.closed = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/api"

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")
            conn.close()
            self.closed += 1


def test_a_connection_the_server_closed_meanwhile_is_not_reused():
    server = OneAnswerPerConnection()
    client = KnitClient(server.url)
    try:
        assert client.find_data() == []
        wait_for(lambda: server.closed == 1, timeout=10)
        assert client.find_data() == []  # on a new connection, not "cannot connect"
    finally:
        client.close()
        server.listener.close()


def test_a_server_that_does_not_answer_in_time():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    client = KnitClient(f"http://127.0.0.1:{silent.getsockname()[1]}/api", timeout=0.2)
    try:
        with pytest.raises(KnitError, match=r"http://127.0.0.1:\d+/api did not answer in time"):
            client.find_data()
    finally:
        client.close()
        silent.close()


def test_the_query_is_encoded_as_requests_encodes_params():
    params = {"tag": ["a:b c", "x:1"], "since": None, "duration": "", "plan": "p,q"}
    assert with_query("/api/data", params) == "/api/data?tag=a%3Ab+c&tag=x%3A1&duration=&plan=p%2Cq"
    assert with_query("/api/data", {"tag": [], "since": None}) == "/api/data"
