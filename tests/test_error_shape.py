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


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One real server for every case (each is an error, so none changes what the next sees),
    with a Data, its upload run and the upload's pseudo plan to aim at."""
    from apiclient import Api
    from fake_runner import FakeRunner

    from knitfab.server import Config, KnitfabServer
    from knitfab.store.layout import Layout

    data_dir = tmp_path_factory.mktemp("errors") / "server"
    server = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05), runner=FakeRunner(Layout(data_dir)))
    server.start()
    api = Api(server.url.removesuffix("/api"))
    pushed = api.push({"x": "1"})
    run = pushed["upstream"]["run"]
    yield api, {"data": pushed["knitId"], "upload": run["runId"], "pseudo": run["plan"]["planId"]}
    api.http.close()
    server.stop()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"), ERRORS, ids=[f"{e[0]} {e[1]} {e[4]}" for e in ERRORS]
)
def test_every_error_path_has_the_same_shape(served, method, path, body, headers, status):
    api, names = served
    resp = api.call(method, path.format(**names), data=body, headers=headers)
    where = f"{method} {path} -> {resp.status_code} {resp.text!r}"
    assert resp.status_code == status, where
    assert resp.headers["Content-Type"] == "application/json; charset=UTF-8", where
    assert resp.text.endswith("\n"), where
    answer = resp.json()
    assert list(answer) == ["message"] and isinstance(answer["message"], str) and answer["message"], where
