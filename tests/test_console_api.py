"""The console's server side: static files at /, paging of the lists, the graph endpoints."""

import configparser
import fnmatch
import json
from pathlib import Path

import pytest
import requests
from console_history import served, start_server

import knit
from knitfab.__main__ import main
from knitfab.console import STATIC

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    with served(tmp_path_factory.mktemp("console") / "server") as history:
        yield history


def test_the_console_is_served_at_the_root(history):
    page = history.api.call("GET", "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="js/main.js">' in page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self': no inline scripts
    script = history.api.call("GET", "/js/main.js")
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "method, path", [("GET", "/nothing.js"), ("GET", "/js/../../__init__.py"), ("GET", "/api/nothing")]
)
def test_what_is_not_a_console_file_is_a_json_404(history, method, path):
    resp = requests.request(method, history.api.url + path, timeout=10)
    assert resp.status_code == 404 and "message" in resp.json()


def test_unknown_api_routes_keep_their_answers(history):
    assert history.api.call("POST", "/api/nothing").status_code == 404
    assert history.api.call("POST", f"/api/runs/{history.runs['done']}/").status_code == 405


def test_every_console_file_is_in_the_package_data():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["knitfab.console"].split(",")]
    files = [str(p.relative_to(STATIC.parent)) for p in STATIC.rglob("*") if p.is_file()]
    assert files and [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


# -- paging (an extension: limit, offset, order=desc) ------------------------------------------------


@pytest.mark.parametrize("path", ["/api/data/", "/api/plans/", "/api/runs/"])
def test_pages_put_together_are_the_whole_list(history, path):
    whole = history.api.json("GET", path)
    assert len(whole) >= 4
    pages = [history.api.json("GET", path, params={"limit": 3, "offset": n}) for n in range(0, len(whole) + 3, 3)]
    assert all(len(p) == 3 for p in pages[:-2]) and pages[-1] == [] and sum(pages, []) == whole
    newest = history.api.json("GET", path, params={"limit": 2, "order": "desc"})
    assert newest == whole[::-1][:2]
    assert history.api.json("GET", path, params={"order": "desc", "offset": 1}) == whole[::-1][1:]


def test_paging_keeps_the_filters(history):
    tagged = history.api.json("GET", "/api/data/", params={"tag": "type:log"})
    assert len(tagged) == 3
    assert history.api.json("GET", "/api/data/", params={"tag": "type:log", "limit": 1, "offset": 2}) == tagged[2:]
    finished = history.api.json("GET", "/api/runs/", params={"status": "failed,done"})
    last = history.api.json("GET", "/api/runs/", params={"status": "failed,done", "limit": 1, "order": "desc"})
    assert len(finished) > 1 and last == finished[-1:]


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=x", "offset=-2", "order=up", "limit=１"])
def test_bad_pages_are_400(history, query):
    resp = history.api.call("GET", f"/api/data/?{query}")
    assert resp.status_code == 400, resp.text


def test_without_paging_the_answer_is_byte_for_byte_knitfabs(history):
    plain = history.api.call("GET", "/api/runs/").content
    assert (
        plain
        == (
            json.dumps(
                history.api.json("GET", "/api/runs/", params={"offset": 0}), separators=(",", ":"), ensure_ascii=False
            )
            + "\n"
        ).encode()
    )


# -- graphs -------------------------------------------------------------------------------------------


def test_the_lineage_is_the_dot_of_knit_data_lineage(history):
    client = knit.KnitClient(history.server.url)
    for knit_id in history.data.values():
        for up, down, depth in [("all", "all", None), ("1", "1", 1), ("0", "all", None)]:
            ours = history.api.call(
                "GET", "/api/x/lineage", params={"data": knit_id, "up": up, "down": down, "format": "dot"}
            )
            assert ours.text == client.lineage(knit_id, upstream=up != "0", downstream=True, depth=depth)


def test_the_whole_graph_holds_everything_connected(history):
    for root in ({"data": history.data["dataset"]}, {"run": history.runs["failed"]}):
        svg = history.api.call("GET", "/api/x/lineage", params=root)
        assert svg.headers["Content-Type"].startswith("image/svg+xml")
        for name in ("done", "failed", "running"):
            assert f"<title>r{history.runs[name]}</title>".replace("-", "&#45;") in svg.text
        assert f"<title>d{history.data['dataset']}</title>".replace("-", "&#45;") in svg.text
        assert history.data["scratch"].replace("-", "&#45;") not in svg.text  # not connected


def test_everything_made_from_a_data_leaves_its_upstream_out(history):
    dot = history.api.call(
        "GET", "/api/x/lineage", params={"data": history.data["model"], "up": 0, "down": "all", "format": "dot"}
    ).text
    assert f'"r{history.runs["failed"]}"' in dot and f'"r{history.runs["done"]}"' not in dot


def test_the_plan_graph_is_the_dot_of_knit_plan_graph(history):
    client = knit.KnitClient(history.server.url)
    plan_id = history.plans["train"]
    ours = history.api.call("GET", "/api/x/plangraph", params={"plan": plan_id, "format": "dot"}).text
    assert ours == client.plan_graph(plan_id)
    assert history.plans["evaluate"] in ours and history.plans["serve"] in ours
    svg = history.api.call("GET", "/api/x/plangraph", params={"plan": plan_id, "up": "all", "down": "all"})
    assert svg.status_code == 200 and "<svg" in svg.text


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/x/lineage?data=nope", 404),
        ("/api/x/lineage?run=nope", 404),
        ("/api/x/lineage", 400),
        ("/api/x/lineage?data=a&run=b", 400),
        ("/api/x/plangraph?plan=nope", 404),
        ("/api/x/plangraph", 400),
        ("/api/x/plangraph?plan=x&up=many", 400),
    ],
)
def test_bad_graph_queries(history, path, status):
    assert history.api.call("GET", path).status_code == status


# -- tokens and --public ---------------------------------------------------------------------------


def test_with_a_token_the_console_loads_and_the_api_asks_for_it(tmp_path):
    server = start_server(tmp_path / "server", token="s3cret")
    try:
        url = server.url.removesuffix("/api")
        assert requests.get(url + "/", timeout=10).status_code == 200
        assert requests.get(url + "/api/x/lineage?data=x", timeout=10).status_code == 401
        assert requests.get(url + "/api/data/", timeout=10).status_code == 401
        ok = requests.get(url + "/api/data/", headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert ok.status_code == 200
    finally:
        server.stop()


def test_public_serves_another_console(tmp_path):
    from fake_runner import FakeRunner

    from knitfab.server import Config, KnitfabServer
    from knitfab.store.layout import Layout

    (tmp_path / "web" / "static").mkdir(parents=True)
    (tmp_path / "web" / "index.html").write_text("<html>Knitfab's own console</html>")
    (tmp_path / "web" / "static" / "app.js").write_text("console.log(1)")
    data_dir = tmp_path / "server"
    server = KnitfabServer(Config(port=0, data_dir=data_dir, public=tmp_path / "web"), FakeRunner(Layout(data_dir)))
    server.start()
    try:
        url = server.url.removesuffix("/api")
        assert requests.get(url + "/", timeout=10).text == "<html>Knitfab's own console</html>"
        assert requests.get(url + "/static/app.js", timeout=10).text == "console.log(1)"
        assert requests.get(url + "/js/main.js", timeout=10).status_code == 404
        assert requests.get(url + "/api/data/", timeout=10).json() == []
    finally:
        server.stop()


def test_public_needs_an_index(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--data-dir", str(tmp_path / "d"), "--public", str(tmp_path)])
    assert exited.value.code == 2 and "--public wants a directory with an index.html" in capsys.readouterr().err


def test_hostile_tags_stay_text_in_the_svg(history):
    evil = history.api.push({"x": "1"}, "evil:<svg onload=alert(1)><script>alert(2)</script>")["knitId"]
    svg = history.api.call("GET", "/api/x/lineage", params={"data": evil}).text
    assert "<script" not in svg and "<svg onload" not in svg
    assert "&lt;svg onload=alert(1)&gt;&lt;script&gt;" in svg


def test_graphs_past_the_node_limit_are_cut_or_refused(history, monkeypatch):
    from knitfab.console import graphs

    monkeypatch.setattr(graphs, "MAX_NODES", 3)
    whole = history.api.call("GET", "/api/x/lineage", params={"data": history.data["model"], "format": "dot"})
    assert whole.status_code == 200 and whole.text.count("[\n\t\tshape=none") == 3
    traced = history.api.call(
        "GET", "/api/x/lineage", params={"data": history.data["model"], "up": "all", "down": "all"}
    )
    assert traced.status_code == 400 and "more than 3 nodes" in traced.json()["message"]
