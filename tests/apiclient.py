"""Test helpers that talk to a live server over HTTP, the way clients do."""

from __future__ import annotations

import io
import tarfile

import requests

from knit.transport import connect, send_chunked


def make_tar(files: dict[str, bytes | str], compressed: bool = True, extra=None) -> bytes:
    """A tar(.gz) of ``files`` (name → content); ``extra(tar)`` may add hand-made members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compressed else "w") as tar:
        for name, content in files.items():
            raw = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
        if extra:
            extra(tar)
    return buf.getvalue()


def upload(url: str, body: bytes, content_type: str = "application/tar+gzip", piece: int = 7000):
    """POST /api/data/ as Knitfab's CLI does: chunked, with the MD5 trailer. (status, json)."""
    conn = connect(url)
    chunks = (body[i : i + piece] for i in range(0, len(body), piece))
    resp = send_chunked(conn, "POST", "/api/data/", chunks, {"Content-Type": content_type})
    payload = resp.read()
    conn.close()
    return resp.status, (requests.models.complexjson.loads(payload) if payload else None)


class Api:
    """JSON calls against ``url`` (the server's root, without /api)."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=30, **kwargs)

    def json(self, method: str, path: str, expect: int = 200, **kwargs):
        resp = self.call(method, path, **kwargs)
        assert resp.status_code == expect, (resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def push(self, files: dict[str, str], *tags: str) -> dict:
        status, detail = upload(self.url, make_tar(files))
        assert status == 200, detail
        if tags:
            detail = self.json("PUT", f"/api/data/{detail['knitId']}", json={"add": list(tags)})
        return detail
