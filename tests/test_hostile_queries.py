"""Hostile queries and bodies get a clear 4xx, never a 500 (issue 9 point 6)."""

import json

import pytest
from apiclient import Api

from knitfab.server import Config, KnitfabServer
from knitfab.store.layout import Layout

JSON = {"Content-Type": "application/json"}
PLAN = {"image": "repo/img:1", "inputs": [{"path": "/in", "tags": ["a:b"]}], "outputs": []}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from fake_runner import FakeRunner

    data_dir = tmp_path_factory.mktemp("hostile") / "server"
    srv = KnitfabServer(Config(port=0, data_dir=data_dir, poll=0.05), runner=FakeRunner(Layout(data_dir)))
    srv.start()
    client = Api(srv.url.removesuffix("/api"))
    yield client
    client.http.close()
    srv.stop()


@pytest.fixture(scope="module")
def knit_id(api):
    return api.push({"x": "1"}, "a:b")["knitId"]


def assert_400(resp, *words):
    assert resp.status_code == 400, (resp.status_code, resp.text[:300])
    message = resp.json()["message"]
    for word in words:
        assert word in message, message
    assert len(resp.content) < 1000, "the error echoes the input"


def nested(depth: int) -> bytes:
    return b'{"add": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_json_is_a_400(api, knit_id, depth):
    assert_400(api.call("PUT", f"/api/data/{knit_id}", data=nested(depth), headers=JSON), "nested deeper")
    body = json.dumps({**PLAN, "annotations": json.loads(b"[" * 800 + b"]" * 800)})
    assert_400(api.call("POST", "/api/plans/", data=body, headers=JSON), "nested deeper")


@pytest.mark.parametrize(
    "path, name",
    [("/api/data/", "tag"), ("/api/plans/", "in_tag"), ("/api/runs/", "plan"), ("/api/runs/", "status")],
)
def test_thousands_of_repeated_parameters_are_a_400(api, path, name):
    value = "done" if name == "status" else "k:v"
    query = "&".join(f"{name}={value}{i if name != 'status' else ''}" for i in range(2000))
    assert_400(api.call("GET", f"{path}?{query}"), f"at most 256 {name}=")


def test_the_most_tags_a_query_may_hold_still_work(api, knit_id):
    query = "&".join(f"tag=k{i}:v" for i in range(255)) + "&tag=a:b"
    assert api.call("GET", f"/api/data/?{query}").json() == []
    assert [d["knitId"] for d in api.json("GET", "/api/data/?tag=a:b")] == [knit_id]


@pytest.mark.parametrize(
    "query",
    [
        "since=2024-01-01T00:00:00%2B25:00",
        "since=2024-01-01T00:00:00-24:00",
        "since=2024-01-01T00:00:00%2B01:60",
        "since=2024-01-01T00:00:00Z&duration=99999999999999999999h",
        "since=2024-01-01T00:00:00Z&duration=" + "9" * 400 + "h",
        "since=2024-01-01T00:00:00Z&duration=-3000000h",
    ],
)
@pytest.mark.parametrize("path", ["/api/data/", "/api/runs/"])
def test_out_of_range_times_are_a_400(api, path, query):
    assert_400(api.call("GET", f"{path}?{query}"))


@pytest.mark.parametrize(
    "path, query",
    [("/api/data/", "since=&duration="), ("/api/runs/", "since=&duration="), ("/api/plans/", "active=")],
)
def test_empty_query_values_are_absent(api, knit_id, path, query):
    assert api.json("GET", f"{path}?{query}") == api.json("GET", path)


@pytest.mark.parametrize(
    "method, path, allowed", [("PATCH", "/api/data/", {"GET", "POST"}), ("POST", "/api/healthz", {"GET"})]
)
def test_405_says_what_is_allowed(api, method, path, allowed):
    resp = api.call(method, path)
    assert resp.status_code == 405
    assert allowed <= {m.strip() for m in resp.headers["Allow"].split(",")}
    assert resp.json() == {"message": "Method Not Allowed"}


BAD_TAGS = [
    "k:v\x00x",
    "k:a\tb",
    "k\x00:v",
    "k:line\nbreak",
    "k:\x1b[31mred",
    "k:\x7f",
    "k" * 1025 + ":v",
    "k:" + "v" * (1 << 20) + "v",
]


@pytest.mark.parametrize("tag", BAD_TAGS, ids=range(len(BAD_TAGS)))
def test_tags_with_control_characters_or_absurd_length_are_a_400(api, knit_id, tag):
    assert_400(api.call("PUT", f"/api/data/{knit_id}", json={"add": [tag]}))
    plan = {**PLAN, "inputs": [{"path": "/in", "tags": [tag]}]}
    assert_400(api.call("POST", "/api/plans/", json=plan))
    assert "\\u0000" not in api.call("GET", "/api/data/").text


def test_tags_keep_what_is_allowed(api, knit_id):
    detail = api.json("PUT", f"/api/data/{knit_id}", json={"add": ["ключ:値 with spaces"]})
    assert "ключ:値 with spaces" in detail["tags"]


BAD_PLANS = {
    "NUL in an input path": {"inputs": [{"path": "/in/\u0000x", "tags": ["a:b"]}]},
    "newline in an output path": {"outputs": [{"path": "/out/a\nb", "tags": ["a:b"]}]},
    "a path over PATH_MAX": {"inputs": [{"path": "/in/" + "d/" * 3000, "tags": ["a:b"]}]},
    "a path name over NAME_MAX": {"inputs": [{"path": "/in/" + "n" * 256, "tags": ["a:b"]}]},
    "a huge image name": {"image": "repo/" + "i" * 300 + ":1"},
    "an image with a newline": {"image": "repo/img\n:1"},
    "an image tag with a newline": {"image": "repo/img:1\nx"},
    "NUL in an argument": {"args": ["a\u0000b"]},
    "an absurd argument": {"args": ["a" * ((128 << 10) + 1)]},
    "an absurd annotation": {"annotations": ["k=" + "v" * ((64 << 10) + 1)]},
    "a control character in an annotation key": {"annotations": ["k\x01=v"]},
    "a thousand inputs": {"inputs": [{"path": f"/in/{i}", "tags": ["a:b"]} for i in range(1000)]},
    "a thousand tags on an input": {"inputs": [{"path": "/in", "tags": [f"k:{i}" for i in range(1000)]}]},
    "a control character in a service account": {"service_account": "sa\n"},
    "a label value with a newline": {"on_node": {"may": ["k=v\n"]}},
}


@pytest.mark.parametrize("change", BAD_PLANS.values(), ids=BAD_PLANS.keys())
def test_plans_with_control_characters_or_absurd_sizes_are_a_400(api, change):
    before = api.json("GET", "/api/plans/")
    assert_400(api.call("POST", "/api/plans/", json={**PLAN, **change}))
    assert api.json("GET", "/api/plans/") == before


def test_a_sane_plan_is_still_accepted(api):
    plan = api.json("POST", "/api/plans/", json={**PLAN, "args": ["multi\nline"], "annotations": ["k=v"]})
    assert plan["inputs"][0]["path"] == "/in"


def test_a_checksum_header_that_is_not_an_md5_is_a_400_never_quoted(api):
    headers = {"Content-Type": "application/x-tar", "x-checksum-md5": "C" * 5000}
    resp = api.call("POST", "/api/data/", data=b"\0" * 1024, headers=headers)
    assert_400(resp, "not an MD5")
    assert "CCCC" not in api.call("GET", "/api/runs/").text
