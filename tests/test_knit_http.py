"""knit's own HTTP/1.1 client (knit/http1.py) on real sockets: framing by Content-Length, chunks
(with trailers) or the end of the connection; keep-alive; and a hostile server's answers (long
or many header fields, bad chunk sizes, short bodies, ambiguous lengths) refused, not trusted."""

import contextlib
import hashlib
import socket
import threading

import pytest
from helpers import wait_for

from knit import KnitClient, KnitError
from knit.http1 import MAX_FIELDS, MAX_INTERIM, MAX_LINE, Connection, IncompleteBody, ProtocolError
from knit.transport import Unreachable, connect, send_chunked

DEADLINE = 10


class RawServer:
    """Answers the requests of each connection with the next of ``answers`` (raw bytes), in
    order; a connection is closed after ``per_connection`` answers. ``heads`` keeps what was
    asked (the request heads), ``accepted`` counts the connections."""

    def __init__(self, *answers: bytes, per_connection: int = 100):
        self.answers, self.per_connection = list(answers), per_connection
        self.heads: list[bytes] = []
        self.accepted = 0
        self.clients: list[Connection] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def connection(self, timeout: float = DEADLINE) -> Connection:
        self.clients.append(Connection("127.0.0.1", self.port, timeout))
        return self.clients[-1]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(DEADLINE)
                answered = 0
                with contextlib.suppress(OSError):
                    while answered < self.per_connection and self._answer(conn):
                        answered += 1

    def _answer(self, conn: socket.socket) -> bool:
        """Answer one request; False once the client closed (or no answer is left)."""
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(65536)
            if not data:
                return False
            head += data
        self.heads.append(head)
        if not self.answers:
            return False
        conn.sendall(self.answers.pop(0))
        return True

    def close(self) -> None:
        for conn in self.clients:
            conn.close()
        self.listener.close()


@pytest.fixture
def raw():
    servers = []

    def start(*answers: bytes, **kwargs) -> RawServer:
        servers.append(RawServer(*answers, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def ask(server: RawServer, method: str = "GET", conn: Connection | None = None):
    conn = conn or server.connection()
    conn.request(method, "/api/data", headers={"Accept": "*/*"})
    return conn.getresponse()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"


def test_a_kept_connection_takes_the_next_request(raw):
    server = raw(OK, OK)
    conn = server.connection()
    for _ in range(2):
        resp = ask(server, conn=conn)
        assert (resp.status, resp.reason, resp.read(), resp.will_close) == (200, "OK", b"[]", False)
        assert resp.getheader("content-TYPE") == "application/json" and resp.getheader("x-none") is None
        assert conn.idle_and_open()
    assert server.accepted == 1
    conn.close()


def test_the_request_head_names_the_host_and_asks_for_no_encoding(raw):
    server = raw(OK, OK)
    conn = server.connection()
    conn.request("POST", "/api/x", b'{"a": 1}', {"User-Agent": "knit/0"})
    assert conn.getresponse().read() == b"[]"
    conn.request("PUT", "/api/y")
    conn.getresponse().read()
    first, second = (head.decode().split("\r\n") for head in server.heads)
    assert first[:2] == ["POST /api/x HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    assert "Content-Length: 8" in first and "User-Agent: knit/0" in first
    assert server.heads[0].endswith(b'\r\n\r\n{"a": 1}')
    assert "Content-Length: 0" in second  # a PUT without body says so, as http.client does
    assert not any(line.lower().startswith("accept-encoding") for line in first + second)
    conn.close()


def test_no_line_breaks_sneak_into_a_request():
    conn = Connection("127.0.0.1", 9)
    with pytest.raises(ValueError):
        conn.request("GET", "/a", headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
    with pytest.raises(ValueError):
        conn.request("GET", "/a HTTP/1.1\r\nX-Evil: 1")
    assert conn.sock is None  # refused before connecting


def test_a_connection_the_server_closed_is_not_idle_and_open(raw):
    server = raw(OK, per_connection=1)
    conn = server.connection()
    assert ask(server, conn=conn).read() == b"[]"
    wait_for(lambda: not conn.idle_and_open(), timeout=DEADLINE)
    conn.close()


def test_a_body_without_length_ends_with_the_connection(raw):
    server = raw(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100_000, per_connection=1)
    resp = ask(server)
    assert resp.will_close and resp.read() == b"x" * 100_000 and resp.read() == b""


def test_http_1_0_closes_unless_kept_alive(raw):
    server = raw(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", OK.replace(b"200 OK", b"200 OK\r\nConnection: close"))
    assert ask(server).will_close and ask(server).will_close


def test_a_chunked_body_keeps_its_trailer(raw):
    body = b"a" * 70_000 + b"b" * 5
    md5 = hashlib.md5(body).hexdigest().encode()
    chunks = b"11170;ext=1\r\n" + body[:70_000] + b"\r\n5\r\n" + body[70_000:] + b"\r\n0\r\n"
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"X-Checksum-MD5: " + md5 + b"\r\n\r\n"
    server = raw(answer, answer, answer)
    conn = server.connection()
    assert ask(server, conn=conn).read() == body
    resp = ask(server, conn=conn)
    buffer = bytearray(len(body) + 10)  # readinto fills the caller's buffer, across chunks
    got = 0
    while n := resp.readinto(memoryview(buffer)[got:]):
        got += n
    assert bytes(buffer[:got]) == body and resp.trailers == {"x-checksum-md5": md5.decode()}
    resp = ask(server, conn=conn)
    assert resp.read1(10) == b"a" * 10 and len(resp.read(69_990)) == 69_990 and resp.read() == b"b" * 5


def test_no_body_after_head_204_and_304(raw):
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n",
                 b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", OK)  # fmt: skip
    conn = server.connection()
    assert ask(server, "HEAD", conn).read() == b""
    assert ask(server, conn=conn).read() == b""
    assert ask(server, conn=conn).read() == b""
    assert ask(server, conn=conn).read() == b"[]"  # the same connection: nothing was left unread
    assert server.accepted == 1


def test_a_switch_of_protocols_closes_the_connection(raw):
    # After a 101 the bytes on the connection are another protocol's: it is never reused.
    server = raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    resp = ask(server)
    assert resp.status == 101 and resp.will_close


def test_an_interim_answer_is_skipped(raw):
    server = raw(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert ask(server).read() == b"[]"


HOSTILE = {
    "a header line too long": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_LINE + b"\r\n\r\n",
    "a status line too long": b"HTTP/1.1 200 " + b"O" * MAX_LINE + b"\r\n\r\n",
    "too many header fields": b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * (MAX_FIELDS + 1) + b"\r\n",
    "not HTTP": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "a bad status code": b"HTTP/1.1 2000 OK\r\n\r\n",
    "a folded header": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n",
    "a header without a colon": b"HTTP/1.1 200 OK\r\nX-A\r\n\r\n",
    "both lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "two different lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "a length not a number": b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
    "an unknown encoding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "endless interim answers": b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INTERIM + 1) + OK,
}
BAD_BODIES = {
    "a chunk size not hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "a chunk size with 0x": b"0x3\r\nabc\r\n0\r\n\r\n",
    "a negative chunk size": b"-3\r\nabc\r\n0\r\n\r\n",
    "a chunk size line too long": b"3" + b" " * 5000 + b"\r\nabc\r\n0\r\n\r\n",
    "a chunk without its CRLF": b"3\r\nabcX\r\n0\r\n\r\n",
    "too many trailer fields": b"3\r\nabc\r\n0\r\n" + b"X-T: 1\r\n" * (MAX_FIELDS + 1) + b"\r\n",
    "a chunk cut short": b"10\r\nabc",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_malformed_head_is_refused(raw, name):
    with pytest.raises(ProtocolError):
        ask(raw(HOSTILE[name], per_connection=1)).read()


@pytest.mark.parametrize("name", BAD_BODIES)
def test_a_malformed_chunked_body_is_refused(raw, name):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    resp = ask(raw(head + BAD_BODIES[name], per_connection=1))
    with pytest.raises(ProtocolError):
        resp.read()


def test_a_body_shorter_than_its_length_is_an_error_not_a_truncation(raw):
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    server = raw(short, short, per_connection=1)
    with pytest.raises(IncompleteBody):
        ask(server).read()
    resp = ask(server)
    assert resp.read(3) == b"abc"
    with pytest.raises(IncompleteBody):
        resp.read(3)


def test_equal_repeated_lengths_are_one_length(raw):
    server = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
    assert ask(server).read() == b"abc"


def test_a_hostile_answer_is_cannot_connect_for_the_client(raw):
    server = raw(HOSTILE["too many header fields"], per_connection=1)
    with pytest.raises(KnitError, match=r"cannot connect to http://127.0.0.1:\d+/api: .*more than 100 header"):
        KnitClient(f"http://127.0.0.1:{server.port}/api").find_data()
    guarded = connect(f"http://127.0.0.1:{raw(HOSTILE['not HTTP']).port}/", guarded=True)
    with pytest.raises(Unreachable, match="bad status line"):
        guarded.request("GET", "/")
        guarded.getresponse()


def test_a_silent_server_is_a_timeout():
    silent = socket.create_server(("127.0.0.1", 0))
    conn = Connection("127.0.0.1", silent.getsockname()[1], timeout=0.2)
    try:
        conn.request("GET", "/")
        with pytest.raises(TimeoutError):
            conn.getresponse()
    finally:
        conn.close()
        silent.close()


def test_a_chunked_upload_and_its_download_with_trailers_on_the_real_server(server):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("a")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    conn = connect(server.url)
    resp = send_chunked(conn, "POST", "/api/data/", iter([buffer.getvalue()]), {"Content-Type": "application/x-tar"})
    assert resp.status == 200 and not resp.will_close, resp.read()
    knit_id = __import__("json").loads(resp.read())["knitId"]
    conn.request("GET", f"/api/data/{knit_id}?format=tar")  # the same connection, kept alive
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200 and resp.trailers["x-checksum-md5"] == hashlib.md5(body).hexdigest()
    conn.close()
