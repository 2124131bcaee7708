"""Every error path answers Knitfab's shape: ``{"message": "..."}`` with the right status."""

import pytest

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}
ERRORS = [
    # (method, path, body, headers, status)
    ("GET", "/api/nowhere", None, None, 404),
    ("PATCH", "/api/data/", None, None, 405),
    ("GET", "/api/data/?tag=nocolon", None, None, 400),
    ("GET", "/api/data/?since=never", None, None, 400),
    ("GET", "/api/data/?duration=1h", None, None, 400),
    ("POST", "/api/data/", b"junk", {"Content-Type": "application/tar+gzip"}, 400),
    ("POST", "/api/data/", b"junk", {"Content-Type": "text/plain"}, 400),
    ("GET", "/api/data/unknown", None, None, 404),
    ("PUT", "/api/data/unknown", b'{"add": ["a:b"]}', JSON, 404),
    ("PUT", "/api/data/{data}", b"[", JSON, 400),
    ("PUT", "/api/data/{data}", b'{"add": ["a:b"]}', {"Content-Type": "text/plain"}, 400),
    ("PUT", "/api/data/{data}", b'{"add": ["knit#id:x"]}', JSON, 400),
    ("GET", "/api/plans/?active=1", None, None, 400),
    ("POST", "/api/plans/", b"{}", JSON, 400),
    ("POST", "/api/plans/", b"[]", JSON, 400),
    ("POST", "/api/plans/", b'{"image": "a:1", "inputs": [{"path": "in", "tags": ["a:b"]}]}', JSON, 400),
    ("GET", "/api/plans/unknown", None, None, 404),
    ("PUT", "/api/plans/unknown/active", None, None, 404),
    ("DELETE", "/api/plans/unknown/active", None, None, 404),
    ("PUT", "/api/plans/unknown/resources", b"{}", JSON, 404),
    ("PUT", "/api/plans/unknown/annotations", b"{}", JSON, 404),
    ("PUT", "/api/plans/unknown/serviceaccount", b'{"service_account": "a"}', JSON, 404),
    ("DELETE", "/api/plans/unknown/serviceaccount", None, None, 404),
    ("PUT", "/api/plans/{pseudo}/active", None, None, 409),
    ("GET", "/api/runs/?status=invalidated", None, None, 400),
    ("GET", "/api/runs/unknown", None, None, 404),
    ("PUT", "/api/runs/unknown/abort", None, None, 404),
    ("PUT", "/api/runs/unknown/tearoff", None, None, 404),
    ("PUT", "/api/runs/unknown/retry", None, None, 404),
    ("DELETE", "/api/runs/unknown", None, None, 404),
    ("GET", "/api/runs/unknown/log", None, None, 404),
    ("PUT", "/api/runs/{upload}/retry", None, None, 409),
    ("PUT", "/api/runs/{upload}/tearoff", None, None, 409),
    ("GET", "/api/runs/{upload}/log", None, None, 404),
]


def test_every_error_path_has_the_same_shape(api):
    pushed = api.push({"x": "1"})
    pseudo = pushed["upstream"]["run"]["plan"]["planId"]
    names = {"data": pushed["knitId"], "upload": pushed["upstream"]["run"]["runId"], "pseudo": pseudo}
    for method, path, body, headers, status in ERRORS:
        resp = api.call(method, path.format(**names), data=body, headers=headers)
        where = f"{method} {path} -> {resp.status_code} {resp.text!r}"
        assert resp.status_code == status, where
        assert resp.headers["Content-Type"] == "application/json; charset=UTF-8", where
        assert resp.text.endswith("\n"), where
        body = resp.json()
        assert list(body) == ["message"] and isinstance(body["message"], str) and body["message"], where
