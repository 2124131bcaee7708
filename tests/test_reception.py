"""The HTTP front under attack (issue 9 point 5, issue 12 point 5): idle TLS clients, slow
clients, oversized heads, chunk-size lines and trailers, streams holding every worker. A real
server on loopback, attacked with raw sockets; every wait has a deadline."""

import _pyio
import contextlib
import logging
import os
import shutil
import socket
import threading
import time

import pytest
import requests
from apiclient import make_tar
from fake_runner import FakeRunner
from helpers import self_signed_cert, wait_for

from knitfab.reception import PrefixedReader
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout

DEADLINE = 3.0  # generous: an answer takes milliseconds; before this work they took 10 s or never came


@contextlib.contextmanager
def serving(tmp_path, **config):
    data_dir = tmp_path / "kf"
    srv = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05, **config), runner=FakeRunner(Layout(data_dir)))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def raw(srv) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=DEADLINE)
    return sock


def response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or the deadline passes)."""
    data, end = b"", time.monotonic() + DEADLINE
    with contextlib.suppress(OSError):
        while time.monotonic() < end and (piece := sock.recv(65536)):
            data += piece
    return data


def status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0


def assert_probes_answer(url: str, **kwargs) -> None:
    for path in ("/healthz", "/readyz", "/healthz"):
        started = time.monotonic()
        resp = requests.get(url + path, timeout=DEADLINE, **kwargs)
        assert resp.status_code == 200 and time.monotonic() - started < DEADLINE


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_idle_tcp_connections_to_a_tls_server_delay_nobody(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    with serving(tmp_path, cert=cert, key=key) as srv:
        idle = [raw(srv) for _ in range(3)]  # connected, never say hello
        try:
            assert_probes_answer(srv.url, verify=str(cert))
            assert requests.get(f"{srv.url}/data/", verify=str(cert), timeout=DEADLINE).json() == []
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.slow
def test_thirty_two_slow_clients_neither_starve_the_probes_nor_stay_for_ever(tmp_path):
    with serving(tmp_path, client_timeout=2.5) as srv:
        slow = [raw(srv) for _ in range(32)]
        stop = threading.Event()

        def trickle():
            for sock in slow:
                sock.sendall(b"GET /api/data/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            while not stop.wait(0.1):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            assert_probes_answer(srv.url)
            assert requests.get(f"{srv.url}/data/", timeout=DEADLINE).json() == []
            answers = [response(sock) for sock in slow]  # the head deadline (2.5 s) ends each
        finally:
            stop.set()
            trickler.join(timeout=DEADLINE)
            for sock in slow:
                sock.close()
        assert {status(a) for a in answers} == {408}


@pytest.mark.slow
def test_streams_holding_every_worker_leave_the_probes_answering(tmp_path):
    with serving(tmp_path, threads=2) as srv:
        streams = [raw(srv) for _ in range(4)]
        try:
            for sock in streams:  # an upload whose client stalls after its first chunk
                sock.sendall(
                    b"POST /api/data/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/tar+gzip\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n"
                )
            wait_for(lambda: srv.http.requests.idle == 0, timeout=DEADLINE)
            assert_probes_answer(srv.url)
        finally:
            for sock in streams:
                sock.close()


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def peak_rss_growth():
    """Samples this process's resident memory (the server runs in it) while the block runs."""
    baseline, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss() - baseline)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    yield peak
    done.set()
    sampler.join()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["request line", "header line"])
def test_an_oversized_head_is_a_431_and_costs_no_memory(tmp_path, where):
    start = b"GET /api/data/?q=" if where == "request line" else b"GET /api/data/ HTTP/1.1\r\nX-Big: "
    with serving(tmp_path) as srv:
        sock = raw(srv)
        sock.sendall(start + b"a" * (200 << 10))
        answer = response(sock)
        assert status(answer) == 431 and b'{"message":' in answer
        sock.close()
        with peak_rss_growth() as growth:
            sock, piece = raw(srv), b"a" * (1 << 20)
            with contextlib.suppress(OSError):  # the server hangs up long before the end
                sock.sendall(start)
                for _ in range(64):
                    sock.sendall(piece)
            sock.close()
        assert growth[0] < 24 << 20, f"the server grew by {growth[0] >> 20} MiB reading a 64 MiB head"
        assert_probes_answer(srv.url)


def chunked_upload(srv, body: bytes) -> tuple[int, bytes]:
    sock = raw(srv)
    sock.sendall(
        b"POST /api/data/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/tar+gzip\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )
    answer = response(sock)
    sock.close()
    return status(answer), answer


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, words",
    [
        (b"0" * 8000 + b"1\r\na\r\n", b"chunk-size line is longer than 4096 bytes"),
        (b"zz\r\nab\r\n0\r\n\r\n", b"not a hexadecimal number"),
        (b"-1\r\na\r\n", b"not a hexadecimal number"),
    ],
    ids=["long", "not hex", "negative"],
)
def test_a_bad_chunk_size_line_is_a_400(tmp_path, body, words):
    with serving(tmp_path) as srv:
        code, answer = chunked_upload(srv, body)
        assert code == 400 and words in answer, answer[:500]
        assert len(answer) < 1000


@pytest.mark.slow
@pytest.mark.parametrize("value", [b"A" * 100_000, b"B" * 2000], ids=["over the limit", "not an MD5"])
def test_a_bad_trailer_is_a_400_and_never_echoed_nor_stored(tmp_path, caplog, value):
    caplog.set_level(logging.INFO)
    with serving(tmp_path) as srv:
        code, answer = chunked_upload(srv, chunk(make_tar({"a": "1"})) + b"0\r\nx-checksum-md5: " + value + b"\r\n\r\n")
        assert code == 400, answer[:500]
        assert len(answer) < 1000
        stored, sample = requests.get(f"{srv.url}/runs/", timeout=DEADLINE).text, value[:20].decode()
        assert sample not in stored and "failed" in stored
        assert not any(sample in r.getMessage() for r in caplog.records)
        assert requests.get(f"{srv.url}/data/", timeout=DEADLINE).json() == []


@pytest.mark.slow
def test_a_large_body_the_handler_does_not_read_costs_no_memory(tmp_path):
    with serving(tmp_path) as srv, peak_rss_growth() as growth:
        sock, piece = raw(srv), b"a" * (1 << 20)
        sock.sendall(b"POST /api/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
        with contextlib.suppress(OSError):  # the server answers 405 and hangs up
            for _ in range(64):
                sock.sendall(piece)
        assert status(response(sock)) == 405
        sock.close()
    assert growth[0] < 24 << 20, f"the server grew by {growth[0] >> 20} MiB for a 64 MiB body it did not want"


@pytest.mark.slow
def test_slow_bodies_nobody_reads_hold_no_worker(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret")
    token.chmod(0o600)
    with serving(tmp_path, threads=2, token_file=token) as srv:
        slow = [raw(srv) for _ in range(4)]  # no token: each gets a 401 before its body is read
        try:
            for sock in slow:
                sock.sendall(b"POST /api/data/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\na")
            assert [status(response(sock)) for sock in slow] == [401] * 4
            headers = {"Authorization": "Bearer s3cret"}
            assert requests.get(f"{srv.url}/data/", headers=headers, timeout=DEADLINE).json() == []
        finally:
            for sock in slow:
                sock.close()


@pytest.mark.slow
def test_requests_waiting_for_a_worker_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr("knitfab.server.MAX_QUEUED", 2)
    with serving(tmp_path, threads=1) as srv:
        held = raw(srv)  # an upload that holds the only worker
        held.sendall(
            b"POST /api/data/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"
        )
        wait_for(lambda: srv.http.requests.idle == 0, timeout=DEADLINE)
        queued = [raw(srv) for _ in range(4)]
        for sock in queued:
            sock.sendall(b"GET /api/data/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert [status(response(sock)) for sock in queued[2:]] == [503, 503]  # at once, not queued
        assert_probes_answer(srv.url)
        held.close()
        assert [status(response(sock)) for sock in queued[:2]] == [200, 200]
        for sock in queued:
            sock.close()


@pytest.mark.slow
def test_a_large_write_to_a_slow_reader_waits_per_step_not_for_the_whole(tmp_path):
    """The client timeout bounds each send, as cheroot's writer does: a download that takes
    longer in all than the timeout, to a reader that keeps reading, arrives whole."""
    from knitfab.reception import SocketWriter

    ours, theirs = socket.socketpair()
    ours.settimeout(0.5)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    body = os.urandom(4 << 20)
    got = bytearray()

    def slow_reader():
        while len(got) < len(body):
            got.extend(theirs.recv(256 << 10))
            time.sleep(0.05)  # about 5 MiB/s: the 4 MiB take about a second in all

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    writer = SocketWriter(ours, "wb")
    writer.write(body)
    writer.flush()
    reader.join(timeout=30)
    assert bytes(got) == body
    ours.close(), theirs.close()


def test_the_head_s_lines_are_read_from_the_buffer_and_the_body_after_them_is_intact(monkeypatch):
    # _pyio's readline, cheroot's, peeks and reads again in Python for every header line.
    ours, theirs = socket.socketpair()
    head = b"PUT /api/data/x/ HTTP/1.1\r\n" + b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(30)) + b"\r\n"
    reader = PrefixedReader(ours)
    reader.unread(head + b"{}")  # what Reception read before it handed the connection over
    theirs.sendall(b"rest of the body")
    reads = []
    real_read = _pyio.BufferedReader.read
    monkeypatch.setattr(_pyio.BufferedReader, "read", lambda self, *a: reads.append(a) or real_read(self, *a))
    lines = [reader.readline(65536) for _ in range(32)]
    assert b"".join(lines) == head and len(reads) <= 1  # the first line fills the buffer
    assert reader.readline(3) == b"{}r" and reader.read(15) == b"est of the body"
    assert reader.bytes_read == len(head) + 18
    ours.close(), theirs.close()
