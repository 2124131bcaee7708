"""The checksum trailer of a transfer: Knitfab's ``x-checksum-md5`` to and from Knitfab's clients
and servers, SHA-256 in ``Content-Digest`` (RFC 9530) between our own ``knit`` and server, each
checked by whoever receives the bytes."""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import threading

import pytest
from apiclient import make_tar
from knitfab_like import without_extensions

import knit
from knit import archive, digests
from knit.client import GZIP, TAR
from knit.digests import MD5, SHA256
from knit.transfers import ChecksumMismatch
from knit.transport import connect


@pytest.fixture(autouse=True)
def fast_sha256(monkeypatch):
    """As on a CPU with SHA instructions (this one's, or not: the tests hold either way)."""
    monkeypatch.setattr(digests, "sha256_is_fast", lambda: True)


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


# -- the fields -------------------------------------------------------------------------------


def test_a_content_digest_says_the_sha256_of_the_bytes_and_is_read_back():
    body = b"some bytes"
    assert SHA256.value(hashlib.sha256(body).hexdigest()) == content_digest(body)
    assert SHA256.claimed(content_digest(body)) == hashlib.sha256(body).hexdigest()
    assert SHA256.claimed("md5=:AAAA:, " + content_digest(body)) == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    "value",
    ["", "sha-512=:" + "A" * 88 + ":", "sha-256=:not base64!:", "sha-256=:" + base64.b64encode(b"short").decode() + ":",
     "sha-256=" + hashlib.sha256(b"").hexdigest()],
    ids=["empty", "another-algorithm", "not-base64", "too-short", "hex-not-base64"],
)  # fmt: skip
def test_a_content_digest_without_a_sha256_claims_nothing(value):
    with pytest.raises(ValueError, match="no sha-256 digest"):
        SHA256.claimed(value)


def test_an_md5_trailer_is_32_hex_digits():
    assert MD5.claimed(" ABCDEF" + "0" * 26 + " ") == "abcdef" + "0" * 26
    with pytest.raises(ValueError, match="not an MD5"):
        MD5.claimed("sha-256=:AAAA:")


def test_what_a_message_announces_and_a_download_asks_for():
    assert digests.announced("x-checksum-md5") is MD5 and digests.announced(None) is MD5
    assert digests.announced("Content-Digest") is SHA256 and digests.announced(" foo, content-digest ") is SHA256
    assert digests.announced(None, "sha-256=:AAAA:") is SHA256
    assert digests.wanted("sha-256=1") is SHA256 and digests.wanted("md5=3, sha-256=10") is SHA256
    assert digests.wanted(None) is MD5 and digests.wanted("sha-256=0") is MD5 and digests.wanted("sha-512=5") is MD5
    assert digests.offered({"digests": ["sha-256", "md5"]}) is SHA256
    assert digests.offered(None) is MD5 and digests.offered({"upload": [TAR]}) is MD5


def test_pack_and_unpack_hash_with_the_checksum_they_are_given(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(bytes(range(256)) * 5000)
    packed = archive.pack(tmp_path / "src", compressed=False, checksum=SHA256)
    body = b"".join(packed)
    assert packed.hasher.hexdigest() == hashlib.sha256(body).hexdigest()
    dest = tmp_path / "dest"
    dest.mkdir()
    assert archive.unpack(io.BytesIO(body), dest, False, checksum=SHA256) == hashlib.sha256(body).hexdigest()


X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 {} rdrand\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd aes pmull sha1 {} crc32\n"


def test_sha256_is_asked_for_where_the_cpu_computes_it_in_hardware():
    assert digests.sha_instructions(X86.format("sha_ni"), "x86_64")
    assert not digests.sha_instructions(X86.format("adx"), "x86_64")
    assert digests.sha_instructions(ARM.format("sha2"), "aarch64")
    assert not digests.sha_instructions(ARM.format("asimdhp"), "aarch64")
    assert digests.sha_instructions(None, "arm64") and not digests.sha_instructions(None, "x86_64")  # no /proc


def test_where_sha256_is_slow_both_ends_keep_md5(monkeypatch, server, dataset):
    monkeypatch.setattr(digests, "sha256_is_fast", lambda: False)
    assert digests.wanted("sha-256=1") is MD5 and digests.offered({"digests": ["sha-256"]}) is MD5
    client = knit.KnitClient(server.url)
    assert client._formats()["digests"] == ["md5"] and client._upload_format() == (TAR, MD5)
    with client.download(client.push_dir(dataset)["knitId"], negotiate=True) as resp:
        body = resp.read()
        assert resp.trailers == {"x-checksum-md5": hashlib.md5(body).hexdigest()}


# -- knit and the server ---------------------------------------------------------------------


class Relay:
    """A real loopback TCP relay to ``url``'s server, keeping the bytes the client sent."""

    def __init__(self, url: str):
        host, port = url.split("//")[1].split("/")[0].split(":")
        self.upstream, self.sent = (host, int(port)), bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/api"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, self.sent), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        try:
            while data := src.recv(1 << 16):
                if keep is not None:
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "dataset"
    root.mkdir()
    (root / "weights.bin").write_bytes(bytes(range(256)) * 9000)
    return root


def test_knit_pushes_to_ours_with_sha256_and_to_knitfab_with_md5(server, dataset):
    assert knit.KnitClient(server.url)._upload_format() == (TAR, SHA256)
    with without_extensions(server.url) as knitfab_like:
        assert knit.KnitClient(knitfab_like)._upload_format() == (GZIP, MD5)
    relay = Relay(server.url)
    try:
        knit.KnitClient(relay.url).push_dir(dataset)
    finally:
        relay.close()
    rest = bytes(relay.sent).partition(b"POST /api/data")[2]
    assert b"\r\nTrailer: content-digest\r\n" in rest
    assert b"\r\n0\r\ncontent-digest: sha-256=:" in rest and b"x-checksum-md5" not in rest


def test_knit_pulls_from_ours_with_sha256_and_a_knitfab_client_still_gets_md5(server, dataset, tmp_path):
    client = knit.KnitClient(server.url)
    knit_id = client.push_dir(dataset)["knitId"]
    with client.download(knit_id, negotiate=True) as resp:
        body = resp.read()
        assert resp.getheader("Trailer") == "content-digest"
        assert resp.trailers == {"content-digest": content_digest(body)}
    with client.download(knit_id) as resp:  # no Want-Content-Digest: Knitfab's knit
        body = resp.read()
        assert resp.trailers == {"x-checksum-md5": hashlib.md5(body).hexdigest()}
    pulled = client.pull(knit_id, tmp_path / "out", extract=True)
    assert (pulled / "weights.bin").read_bytes() == (dataset / "weights.bin").read_bytes()


def post(server, body: bytes, trailer_names: str, trailers: bytes) -> tuple[int, str]:
    conn = connect(server.url)
    conn.putrequest("POST", "/api/data/")
    for k, v in {"Content-Type": "application/x-tar", "Transfer-Encoding": "chunked", "Trailer": trailer_names}.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(b"%x\r\n%b\r\n0\r\n%b\r\n" % (len(body), body, trailers))
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def test_the_server_checks_the_content_digest_it_was_announced(server, api):
    body = make_tar({"x": "1"}, compressed=False)
    assert post(server, body, "Content-Digest", b"Content-Digest: %s\r\n" % content_digest(body).encode())[0] == 200
    status, text = post(server, body, "Content-Digest", b"Content-Digest: %s\r\n" % content_digest(b"other").encode())
    assert status == 400 and text.startswith('{"message":"hash is not match.\\n') and "SHA-256" in text
    assert len(api.json("GET", "/api/data/")) == 1  # the refused one left nothing


@pytest.mark.parametrize(
    "trailers, says",
    [(b"Content-Digest: sha-512=:AAAA:\r\n", "no sha-256 digest"),
     (b"Content-Digest: sha-256=:%s:\r\nx-checksum-md5: %s\r\n", "send one checksum")],
    ids=["no-sha256", "two-checksums"],
)  # fmt: skip
def test_a_content_digest_the_server_cannot_check_is_refused(server, api, trailers, says):
    body = make_tar({"x": "1"}, compressed=False)
    if b"%s" in trailers:
        sha = base64.b64encode(hashlib.sha256(body).digest())
        trailers %= (sha, hashlib.md5(body).hexdigest().encode())
    status, text = post(server, body, "Content-Digest, x-checksum-md5", trailers)
    assert status == 400 and says in text
    assert api.json("GET", "/api/data/") == []


def test_an_md5_upload_with_a_content_digest_as_well_is_refused(server, api):
    body = make_tar({"x": "1"}, compressed=False)
    sha = base64.b64encode(hashlib.sha256(body).digest())
    trailers = b"x-checksum-md5: %s\r\nContent-Digest: sha-256=:%s:\r\n" % (hashlib.md5(body).hexdigest().encode(), sha)
    status, text = post(server, body, "x-checksum-md5", trailers)
    assert status == 400 and "send one checksum" in text
    assert api.json("GET", "/api/data/") == []


def fake_download(body: bytes, trailer: bytes) -> tuple[socket.socket, threading.Thread]:
    """A server answering one download with ``body`` (plain tar) and the trailer field ``trailer``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        name = trailer.split(b":")[0]
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: %s\r\n\r\n%x\r\n%b\r\n0\r\n%b\r\n\r\n" % (name, len(body), body, trailer)
        )
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
def test_knit_checks_the_content_digest_of_a_pull(tmp_path, right):
    body = make_tar({"a.txt": "hello"}, compressed=False)
    listener, thread = fake_download(body, b"Content-Digest: " + content_digest(body if right else b"x").encode())
    client = knit.KnitClient(f"http://127.0.0.1:{listener.getsockname()[1]}/api")
    try:
        if right:
            client.pull("some-id", tmp_path, extract=True)
        else:
            with pytest.raises(ChecksumMismatch, match="checksum unmatch: Your Data is saved"):
                client.pull("some-id", tmp_path, extract=True)
    finally:
        thread.join()
        listener.close()
    assert (tmp_path / "some-id" / "a.txt").read_text() == "hello"
