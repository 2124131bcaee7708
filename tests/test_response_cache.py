"""Answers of the list endpoints are kept, and never given once anything was committed (api/cache.py)."""

from __future__ import annotations

import threading

import pytest
from helpers import push, wait_for

from knitfab.api.app import create_app
from knitfab.api.cache import ENTRY_OVERHEAD, ResponseCache
from knitfab.api.web import Services
from knitfab.store import data
from knitfab.store.db import Store
from knitfab.store.jobs import load_job
from knitfab.tags import Tag

FIND = "/api/data/?tag=a:b"


@pytest.fixture
def cached(store):
    services = Services(store, cache=ResponseCache(1 << 20))
    return create_app(services).test_client(), services.cache


def tags_found(client, path=FIND) -> list[list[str]]:
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    return [d["tags"] for d in resp.json]


def test_a_second_ask_is_answered_from_the_cache_with_the_same_bytes(store, cached):
    client, cache = cached
    push(store, "a:b")
    first = client.get(FIND)
    second = client.get(FIND)
    assert (cache.misses, cache.hits) == (1, 1)
    assert second.data == first.data and second.headers["Content-Type"] == first.headers["Content-Type"]
    assert client.get(FIND + "&pretty").data != first.data  # another target, another answer


def test_a_tag_change_through_the_api_is_seen_at_once(store, cached):
    client, _ = cached
    knit_id = push(store, "a:b")
    tags_found(client)
    assert client.put(f"/api/data/{knit_id}", json={"add": ["c:d"]}).status_code == 200
    assert "c:d" in tags_found(client)[0]


def test_a_commit_of_another_thread_is_seen_at_once(store, cached):
    """As the engine's: its own thread, its own connection."""
    client, _ = cached
    push(store, "a:b")
    assert len(tags_found(client)) == 1
    thread = threading.Thread(target=lambda: push(store, "a:b"))
    thread.start()
    thread.join(timeout=30)
    assert len(tags_found(client)) == 2


def test_a_commit_of_another_process_is_seen_at_once(store, cached):
    """As ``knitfab import``'s: a store of its own on the same database, its own connection."""
    client, _ = cached
    knit_id = push(store, "a:b")
    tags_found(client)
    other = Store(store.layout.root)
    data.change_tags(other, knit_id, add=[Tag("c", "d")])
    other.close()
    assert "c:d" in tags_found(client)[0]


def test_a_kept_answer_still_needs_the_token(store):
    client = create_app(Services(store, token="secret", cache=ResponseCache(1 << 20))).test_client()
    push(store, "a:b")
    assert client.get(FIND, headers={"Authorization": "Bearer secret"}).status_code == 200
    assert client.get(FIND, headers={"Authorization": "Bearer secret"}).status_code == 200  # kept
    assert client.get(FIND).status_code == 401


def test_errors_and_other_endpoints_are_not_kept(store, cached):
    client, cache = cached
    client.get("/api/data/?tag=knit#timestamp:never")  # a 400
    client.get("/api/x/formats")
    assert cache.entries == {}


def test_the_cache_holds_at_most_its_size_counting_each_answers_overhead():
    cache = ResponseCache(10_000)
    for n in range(100):
        cache.put(b"/k%d" % n, 1, b"[]\n")  # tiny answers: what fills the cache is their overhead
    assert cache.size <= 10_000 and len(cache.entries) <= 10_000 // ENTRY_OVERHEAD
    assert b"/k99" in cache.entries and b"/k0" not in cache.entries
    cache.put(b"/big", 1, b"x" * 2000)  # more than an eighth: computed every time
    assert b"/big" not in cache.entries
    assert cache.get(b"/k99", 2) is None  # another generation


@pytest.fixture
def two_threads(tmp_path):
    """A real server whose two workers have both asked for a generation once (their first
    question is always a miss)."""
    from fake_runner import FakeRunner

    from knitfab.server import Config, KnitfabServer
    from knitfab.store.layout import Layout

    srv = KnitfabServer(Config(port=0, data_dir=tmp_path, poll=0.05, threads=2), runner=FakeRunner(Layout(tmp_path)))
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_a_run_the_engine_finishes_is_seen_over_http(two_threads):
    """The answer is kept while the run runs, and the engine's commit ends it."""
    from apiclient import Api

    api, cache = Api(two_threads.url.removesuffix("/api")), two_threads.http.wsgi_app.extensions["knitfab"].cache
    plan = {"image": "example.com/train:v1", "entrypoint": ["fake"], "args": ["hang"],
            "inputs": [{"path": "/in/dataset", "tags": ["type:dataset"]}], "outputs": [], "log": None}  # fmt: skip
    plan_id = api.json("POST", "/api/plans/", json=plan)["planId"]
    api.push({"x": "1"}, "type:dataset")
    runs = f"/api/runs/?plan={plan_id}"
    run = wait_for(lambda: [r for r in api.json("GET", runs) if r["status"] == "running"])[0]
    hits = cache.hits
    assert all(api.json("GET", runs) == [run] for _ in range(10))
    assert cache.hits > hits  # kept
    two_threads.runner.finish(load_job(two_threads.store, run["runId"]), 0)
    wait_for(lambda: two_threads.store.one("SELECT status FROM run WHERE run_id = ?", run["runId"])[0] == "done")
    assert [api.json("GET", runs)[0]["status"] for _ in range(4)] == ["done"] * 4  # at once, on both threads
    api.http.close()


@pytest.mark.slow
def test_no_answer_is_older_than_a_write_acknowledged_before_it_was_asked(server):
    """Readers on every worker while a writer changes a tag: each answer shows at least the
    last change acknowledged before its request was sent."""
    from apiclient import Api

    writer = Api(server.url.removesuffix("/api"))
    knit_id = writer.push({"x": "1"}, "a:b", "v:0")["knitId"]
    acked = [0]  # the last version whose PUT was answered
    stale, asked, done = [], [0], threading.Event()

    def read():
        reader = Api(server.url.removesuffix("/api"))
        while not done.is_set():
            floor = acked[0]
            (detail,) = reader.json("GET", FIND)
            seen = max(int(t.split(":")[1]) for t in detail["tags"] if t.startswith("v:"))
            asked[0] += 1
            if seen < floor:
                stale.append((seen, floor))
        reader.http.close()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for version in range(1, 40):
        writer.json("PUT", f"/api/data/{knit_id}", json={"add": [f"v:{version}"], "remove": [f"v:{version - 1}"]})
        acked[0] = version
        before = asked[0]  # readers ask a few times between writes: some answers come from the cache
        wait_for(lambda: asked[0] >= before + 20)  # noqa: B023 (more than the 16 workers: each sees a commit once)
    done.set()
    for thread in readers:
        thread.join(timeout=30)
    writer.http.close()
    cache = server.http.wsgi_app.extensions["knitfab"].cache
    assert not stale and asked[0] > 40 and cache.hits > 0
