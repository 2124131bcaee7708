"""``/api/data`` over real HTTP: find, upload, download, tags (spec §3 D1–D4, §4)."""

import gzip
import hashlib
import io
import os
import socket
import tarfile

import pytest
from apiclient import make_tar, upload
from helpers import wait_for

from knit.transport import connect

pytestmark = pytest.mark.slow


def untar(raw: bytes, compressed=True) -> dict:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz" if compressed else "r:") as tar:
        for m in tar:
            if m.isfile():
                out[m.name] = (tar.extractfile(m).read().decode(), oct(m.mode))
            elif m.issym():
                out[m.name] = ("-> " + m.linkname, "link")
            elif m.isdir():
                out[m.name] = ("dir", oct(m.mode))
    return out


def download(server, knit_id, query=""):
    conn = connect(server.url)
    conn.request("GET", f"/api/data/{knit_id}{query}")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_push_then_pull_round_trip(server, api):
    def extra(tar):
        for name, kind in (("empty", tarfile.DIRTYPE), ("sub/link", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o755
            if kind == tarfile.SYMTYPE:
                info.linkname = "../a.txt"
            tar.addfile(info)
        info = tarfile.TarInfo("run.sh")
        info.size, info.mode = 9, 0o755
        tar.addfile(info, io.BytesIO(b"#!/bin/sh"))

    status, detail = upload(api.url, make_tar({"a.txt": "alpha", "sub/b.txt": "beta"}, extra=extra))
    assert status == 200
    assert detail["tags"][1].startswith("knit#timestamp:")
    assert detail["upstream"]["run"]["status"] == "done"
    resp, body = download(server, detail["knitId"])
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/tar+gzip"
    assert resp.trailers["x-checksum-md5"] == hashlib.md5(body).hexdigest()
    assert untar(body) == {
        "a.txt": ("alpha", "0o644"),
        "empty": ("dir", "0o755"),
        "run.sh": ("#!/bin/sh", "0o755"),
        "sub/b.txt": ("beta", "0o644"),
        "sub/link": ("-> ../a.txt", "link"),
    }


def test_uncompressed_tar_both_ways(server, api):
    status, detail = upload(api.url, make_tar({"x": "1"}, compressed=False), "application/x-tar")
    assert status == 200
    resp, body = download(server, detail["knitId"], "?format=tar")
    assert resp.getheader("Content-Type") == "application/x-tar"
    assert untar(body, compressed=False) == {"x": ("1", "0o644")}
    resp = api.call("GET", f"/api/data/{detail['knitId']}", headers={"Accept": "application/x-tar"})
    assert untar(resp.content, compressed=False) == {"x": ("1", "0o644")}


def test_a_plain_post_with_content_length_works_too(api):
    resp = api.call("POST", "/api/data/", data=make_tar({"x": "1"}), headers={"Content-Type": "application/tar+gzip"})
    assert resp.status_code == 200, resp.text


MANY_BLOCKS = {"big.bin": os.urandom(3 * (1 << 20) + 5000), "small.txt": "x" * 9000}


@pytest.mark.parametrize(
    "compressed, piece", [(False, 7000), (False, 3 << 20), (True, 7000)], ids=["tar-odd-chunks", "tar-big-chunks", "gz"]
)
def test_a_body_of_many_blocks_arrives_whole_whatever_its_chunks(server, api, compressed, piece):
    """Chunks that straddle the server's reads and its 1 MiB blocks, one way and the other."""
    body = make_tar(MANY_BLOCKS, compressed=compressed)
    status, detail = upload(api.url, body, "application/tar+gzip" if compressed else "application/x-tar", piece)
    assert status == 200, detail
    for query, gz in (("?format=tar", False), ("", True)):
        resp, back = download(server, detail["knitId"], query)
        assert resp.trailers["x-checksum-md5"] == hashlib.md5(back).hexdigest()
        with tarfile.open(fileobj=io.BytesIO(back), mode="r:gz" if gz else "r:") as tar:
            assert tar.extractfile("big.bin").read() == MANY_BLOCKS["big.bin"]


def test_a_content_length_body_of_many_blocks_arrives_whole(server, api):
    body = make_tar(MANY_BLOCKS, compressed=False)
    resp = api.call("POST", "/api/data/", data=body, headers={"Content-Type": "application/x-tar"})
    assert resp.status_code == 200, resp.text
    resp, back = download(server, resp.json()["knitId"], "?format=tar")
    with tarfile.open(fileobj=io.BytesIO(back)) as tar:
        assert tar.extractfile("big.bin").read() == MANY_BLOCKS["big.bin"]


def test_a_checksum_mismatch_is_refused_and_leaves_nothing(server, api):
    conn = connect(server.url)
    body = make_tar({"x": "1"})
    conn.putrequest("POST", "/api/data/")
    for k, v in {
        "Content-Type": "application/tar+gzip",
        "Transfer-Encoding": "chunked",
        "Trailer": "x-checksum-md5",
    }.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(b"%x\r\n%b\r\n0\r\nx-checksum-md5: %s\r\n\r\n" % (len(body), body, b"0" * 32))
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 400
    assert text.startswith('{"message":"hash is not match.\\n')
    assert_nothing_visible(server, api)


def assert_nothing_visible(server, api):
    assert api.json("GET", "/api/data/") == []
    layout = server.store.layout
    wait_for(lambda: not any((layout.root / "staging").iterdir()) and not any((layout.root / "data").iterdir()))
    failed = api.json("GET", "/api/runs/?status=failed")
    assert failed and all(r["outputs"] == [] for r in failed)


def symlink(name, target):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        tar.addfile(info)

    return add


def member(name, kind, linkname=""):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        tar.addfile(info)

    return add


@pytest.mark.parametrize(
    "files, extra, words",
    [
        ({"/etc/evil": "x"}, None, "not inside the Data"),
        ({"../evil": "x"}, None, "not inside the Data"),
        ({"a/../../evil": "x"}, None, "not inside the Data"),
        ({}, symlink("link", "/etc/passwd"), "points outside"),
        ({}, symlink("a/link", "../../etc"), "points outside"),
        ({}, member("hard", tarfile.LNKTYPE, "../outside"), "unsafe entry"),
        ({}, member("dev", tarfile.CHRTYPE), "device or fifo"),
        ({}, member("fifo", tarfile.FIFOTYPE), "device or fifo"),
    ],
)
def test_malicious_archives_are_refused_and_leave_nothing(server, api, files, extra, words):
    status, error = upload(api.url, make_tar({"ok.txt": "fine", **files}, extra=extra))
    assert status == 400
    assert words in error["message"]
    assert_nothing_visible(server, api)


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_archives_are_refused(server, api, cut):
    body = make_tar({"big.bin": bytes(range(256)) * 400, "b": "x"})
    status, error = upload(api.url, body[: int(len(body) * cut)])
    assert status == 400 and "truncated" in error["message"]
    assert_nothing_visible(server, api)


def test_garbage_is_refused(server, api):
    status, error = upload(api.url, b"this is not a tarball at all" * 100)
    assert status == 400
    status, error = upload(api.url, gzip.compress(b"not a tar inside" * 100))
    assert status == 400
    assert_nothing_visible(server, api)


def test_wrong_content_type_is_refused(api):
    resp = api.call("POST", "/api/data/", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "application/tar+gzip" in resp.json()["message"]


def test_a_client_that_disconnects_mid_upload_leaves_a_failed_run_and_no_data(server, api):
    host, port = server.http.bind_addr[:2]
    sock = socket.create_connection((host, port))
    body = make_tar({"big.bin": bytes(range(256)) * 4000})
    head = (
        b"POST /api/data/ HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/tar+gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head + b"%x\r\n%b\r\n" % (len(body) // 2, body[: len(body) // 2]))
    wait_for(lambda: api.json("GET", "/api/runs/?status=running"))
    sock.close()
    wait_for(lambda: api.json("GET", "/api/runs/?status=failed"))
    (run,) = api.json("GET", "/api/runs/")
    assert run["status"] == "failed" and run["outputs"] == []
    assert_nothing_visible(server, api)


def test_find_by_tags_and_time(api):
    a = api.push({"x": "1"}, "type:dataset", "mode:training")
    b = api.push({"x": "2"}, "type:dataset", "mode:test")
    assert [d["knitId"] for d in api.json("GET", "/api/data/?tag=type:dataset")] == [a["knitId"], b["knitId"]]
    found = api.json("GET", "/api/data?tag=type:dataset&tag=mode:test")
    assert [d["knitId"] for d in found] == [b["knitId"]]
    stamp = next(t for t in b["tags"] if t.startswith("knit#timestamp:")).split(":", 1)[1]
    found = api.json("GET", "/api/data/", params={"since": stamp, "duration": "1h"})
    assert [d["knitId"] for d in found] == [b["knitId"]]
    assert api.json("GET", "/api/data/", params={"tag": f"knit#id:{a['knitId']}"})[0]["knitId"] == a["knitId"]


@pytest.mark.parametrize(
    "query, words",
    [
        ("tag=nocolon", "each tag should be formatted as KEY:VALUE"),
        ("since=yesterday", "RFC3339"),
        ("since=2024-01-01T00:00:00Z&duration=1d", "duration"),
        ("duration=1h", "duration needs since"),
    ],
)
def test_bad_queries_are_400(api, query, words):
    resp = api.call("GET", f"/api/data/?{query}")
    assert resp.status_code == 400 and words in resp.json()["message"]


def test_tag_changes_accept_strings_and_objects(api):
    knit_id = api.push({"x": "1"}, "a:1", "b:1")["knitId"]
    change = {"add": [{"key": "c", "value": "3"}, "d:4"], "remove": [{"key": "a", "value": "1"}], "remove_key": ["b"]}
    detail = api.json("PUT", f"/api/data/{knit_id}/", json=change)
    assert [t for t in detail["tags"] if not t.startswith("knit#")] == ["c:3", "d:4"]


@pytest.mark.parametrize(
    "change, status, words",
    [
        ({"add": ["knit#id:x"]}, 400, "format error"),
        ({"remove_key": ["knit#timestamp"]}, 400, "format error"),
        ({"add": ["a:b"], "extra": 1}, 400, "unknown fields: extra"),
        ({"add": "a:b"}, 400, "add must be a list"),
        ({"add": [{"key": "a"}]}, 400, "format error"),
    ],
)
def test_bad_tag_changes(api, change, status, words):
    knit_id = api.push({"x": "1"})["knitId"]
    resp = api.call("PUT", f"/api/data/{knit_id}", json=change)
    assert resp.status_code == status and words in resp.json()["message"]


def test_tag_changes_on_unknown_data_and_bad_bodies(api):
    resp = api.call("PUT", "/api/data/no-such-id", json={"add": ["a:b"]})
    assert resp.status_code == 404 and resp.json()["message"].startswith("correspontind data is missing")
    knit_id = api.push({"x": "1"})["knitId"]
    resp = api.call("PUT", f"/api/data/{knit_id}", data="{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["message"].startswith("format error")
    assert api.call("GET", "/api/data/no-such-id").status_code == 404
