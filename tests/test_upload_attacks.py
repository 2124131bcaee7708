"""``POST /api/data/`` under attack (issue 9, points 1–4 and 11): a real server, real sockets.

Whatever the archive does, nothing is written outside its Data, nothing half-received is ever
seen, and the client gets a 4xx (or 507) saying why.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile

import pytest
from apiclient import Api, make_tar, upload
from fake_runner import FakeRunner
from hostile import gzip_of, sparse_gnu, sparse_pax, symlink_chain, tar_of, zeros_bomb

from knitfab.diskspace import free_bytes
from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout

pytestmark = pytest.mark.slow
MiB = 1 << 20


def start(data_dir, **limits) -> KnitfabServer:
    server = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05, **limits), runner=FakeRunner(Layout(data_dir)))
    server.start()
    return server


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """One server for the module, with an 8 MiB limit on a Data."""
    server = start(tmp_path_factory.mktemp("limited") / "server", max_data_size=8 * MiB)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(limited):
    client = Api(limited.url.removesuffix("/api"))
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def victim(api, limited) -> str:
    """A done Data of another user, which no upload may touch."""
    return api.push({"victim.txt": "original"})["knitId"]


def send(server, body: bytes, content_type="application/x-tar", length: int | None = None) -> tuple[int, str]:
    """POST ``body`` on a raw socket: with a ``Content-Length`` (``length``, default the body's
    size), then half-close, as a client that stops sending does. (status, message)."""
    host, port = server.http.bind_addr[:2]
    with socket.create_connection((host, port), timeout=30) as sock:
        head = f"POST /api/data/ HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        head += f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, json.loads(resp.read())["message"] if resp.status != 200 else ""


def send_chunked(server, body: bytes, content_type="application/tar+gzip") -> tuple[int, str]:
    status, detail = upload(server.url.removesuffix("/api"), body, content_type)
    return status, detail.get("message", "") if status != 200 else ""


def assert_nothing_stored(server, api, known: list[str]):
    """Only the Data known before exist, on disk too; staging is empty; the upload run failed."""
    layout = server.store.layout
    assert sorted(d["knitId"] for d in api.json("GET", "/api/data/")) == sorted(known)
    assert not any((layout.root / "staging").iterdir())
    assert sorted(p.name for p in (layout.root / "data").iterdir()) == sorted(known)
    failed = api.json("GET", "/api/runs/?status=failed")
    assert failed and all(r["outputs"] == [] for r in failed)


def known(api) -> list[str]:
    return [d["knitId"] for d in api.json("GET", "/api/data/")]


# -- 1: nothing is written outside the Data -------------------------------------------------------


def test_a_symlink_chain_cannot_write_into_another_done_data(limited, api, victim):
    before = known(api)
    # staging/<id> → L1 = staging → L2 = the data directory → data/<victim>/victim.txt
    status, message = send(limited, symlink_chain(2, f"data/{victim}/victim.txt"))
    assert status == 400 and "'c' is already a symlink" in message
    assert (limited.store.layout.data(victim) / "victim.txt").read_text() == "original"
    assert_nothing_stored(limited, api, before)


def test_a_symlink_chain_cannot_write_above_the_data_directory(limited, api, victim):
    before = known(api)
    status, message = send(limited, symlink_chain(3, "escaped"), "application/x-tar")
    assert status == 400 and "unsafe entry" in message
    assert not (limited.store.layout.root.parent / "escaped").exists()
    assert_nothing_stored(limited, api, before)


def test_a_deep_symlink_chain_cannot_reach_an_absolute_host_path(limited, api, tmp_path):
    target = tmp_path / "host-file"
    before = known(api)
    levels = len(limited.store.layout.root.parts) + 2  # from staging/<id>, past "/" (where ".." stays)
    status, message = send_chunked(limited, gzip_of(symlink_chain(levels, str(target).lstrip("/"))))
    assert status == 400 and "unsafe entry" in message
    assert not target.exists()
    assert_nothing_stored(limited, api, before)


@pytest.mark.parametrize(
    "entries, words",
    [
        ([("d", "sym", "sub"), ("sub", "dir"), ("d/f", "file", "x")], "'d/f' goes through 'd', which is a symlink"),
        ([("d", "dir"), ("d/f", "file", "x"), ("d", "sym", "elsewhere")], "'d' is already a directory"),
    ],
    ids=["through-a-link", "link-over-a-directory"],
)
def test_entries_through_or_over_links_and_directories_are_refused(limited, api, entries, words):
    before = known(api)
    status, message = send(limited, tar_of(*entries))
    assert status == 400 and words in message
    assert_nothing_stored(limited, api, before)


# -- 2: truncated archives are never done Data ------------------------------------------------------


def test_a_content_length_body_cut_at_a_member_boundary_is_refused(limited, api):
    full = tar_of(("a", "file", "x" * 3000), ("b", "file", "y"))
    cut = tar_of(("a", "file", "x" * 3000), end=False)
    before = known(api)
    status, message = send(limited, cut, length=len(full))  # the client stops at the boundary
    assert status == 400 and "without tar's end-of-archive blocks" in message
    assert_nothing_stored(limited, api, before)


def test_a_complete_archive_shorter_than_its_content_length_is_refused(limited, api):
    body = tar_of(("a", "file", "x"))
    before = known(api)
    status, message = send(limited, body, length=len(body) + 512)
    assert status == 400 and f"ended after {len(body)} bytes, but its Content-Length is {len(body) + 512}" in message
    assert_nothing_stored(limited, api, before)


@pytest.mark.parametrize(
    "body, words",
    [
        (gzip_of(tar_of(("a", "file", "x" * 3000), ("b", "file", "y"), end=False)), "without tar's end-of-archive"),
        (gzip_of(tar_of(("a", "file", "x" * 3000)))[:-8], "without its CRC and size"),
        (gzip_of(tar_of(("a", "file", "x"))) + b"garbage", "trailing data after its gzip stream"),
        (gzip_of(tar_of(("a", "file", "x")) + b"garbage"), "trailing data after its end-of-archive blocks"),
    ],
    ids=["chunked-without-end-blocks", "gzip-without-trailer", "garbage-after-gzip", "garbage-after-tar"],
)
def test_incomplete_streams_and_trailing_garbage_are_refused(limited, api, body, words):
    before = known(api)
    status, message = send_chunked(limited, body)
    assert status == 400 and words in message
    assert_nothing_stored(limited, api, before)


# -- 3: limits -----------------------------------------------------------------------------------


def test_a_gzip_bomb_is_refused_before_it_is_written(limited, api):
    bomb = zeros_bomb(1, 64 * MiB)
    assert len(bomb) < 100_000
    before = known(api)
    status, message = send_chunked(limited, bomb)
    assert status == 413 and "at most 8.0 MiB (--max-data-size)" in message
    assert_nothing_stored(limited, api, before)


def test_many_files_over_the_limit_are_refused_while_unpacking(limited, api):
    before = known(api)
    status, message = send_chunked(limited, zeros_bomb(12, MiB))
    assert status == 413 and "--max-data-size" in message
    assert_nothing_stored(limited, api, before)


def test_a_data_under_the_limit_is_stored(limited, api):
    status, _ = send_chunked(limited, zeros_bomb(6, MiB))
    assert status == 200


@pytest.mark.parametrize("body", [gzip_of(sparse_gnu()), gzip_of(sparse_pax())], ids=["gnu", "pax"])
def test_a_sparse_terabyte_file_is_refused(limited, api, body):
    assert len(body) < 200
    before = known(api)
    status, message = send_chunked(limited, body)
    assert status == 400 and "'huge' is a sparse file" in message
    assert_nothing_stored(limited, api, before)


def test_an_upload_that_would_eat_into_the_disk_reserve_is_refused(tmp_path):
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    server = start(data_dir, disk_reserve=free_bytes(data_dir) - 64 * MiB)  # 64 MiB of room
    try:
        client = Api(server.url.removesuffix("/api"))
        status, message = send_chunked(server, zeros_bomb(1, 512 * MiB))
        assert status == 507 and "keeps" in message and "--disk-reserve" in message
        assert_nothing_stored(server, client, [])
        assert client.push({"small": "fits"})
    finally:
        server.stop()


def test_a_disk_already_below_its_reserve_refuses_uploads_before_recording_anything(tmp_path):
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    server = start(data_dir, disk_reserve=free_bytes(data_dir) + (1 << 30))
    try:
        # in one piece: refused before its body is read, a body still coming may meet a closed socket
        status, message = send(server, make_tar({"a": "x"}))
        assert status == 507 and "less than its reserve" in message
        assert Api(server.url.removesuffix("/api")).json("GET", "/api/runs/") == []
    finally:
        server.stop()


# -- 4: bad archives are 400, never 500 -----------------------------------------------------------


@pytest.mark.parametrize(
    "entries, words",
    [
        ([("n" * 10_000, "file", "x")], "(10000 characters) is too long"),
        ([("/".join(["d"] * n), "dir") for n in range(1, 2001)], "at most 256 are allowed"),
        ([("h", "hard", "missing")], "hardlink 'h' points to 'missing', which is not a file"),
        ([("d", "dir"), ("d", "sym", "x")], "'d' is already a directory"),
    ],
    ids=["long-name", "2000-nested-directories", "hardlink-to-nothing", "symlink-over-directory"],
)
def test_archives_that_crashed_the_server_are_400(limited, api, entries, words):
    before = known(api)
    status, message = send_chunked(limited, gzip_of(tar_of(*entries)))
    assert status == 400 and words in message
    assert_nothing_stored(limited, api, before)


# -- 11: a Data's links are sent as links, never as the host's files --------------------------------


def test_links_in_a_data_pointing_at_the_host_download_as_links(limited, api, tmp_path):
    (tmp_path / "secret").write_text("SECRET of the host")
    knit_id = api.push({"a.txt": "mine"})["knitId"]
    folder = limited.store.layout.data(knit_id)  # as a run's output may leave them
    (folder / "file-link").symlink_to(tmp_path / "secret")
    (folder / "dir-link").symlink_to(tmp_path)
    resp = api.call("GET", f"/api/data/{knit_id}/?format=tar")
    assert resp.status_code == 200 and b"SECRET" not in resp.content
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        links = {m.name: m.linkname for m in tar}
    assert links == {"a.txt": "", "dir-link": str(tmp_path), "file-link": os.fspath(tmp_path / "secret")}
