"""The API's factory: one ``after_request`` hook wakes the engine after every write that worked."""

from __future__ import annotations

import pytest
from helpers import push

from knitfab.api.app import create_app
from knitfab.api.web import Services


@pytest.fixture
def woken(store):
    calls = []
    app = create_app(Services(store, wake=lambda: calls.append(1)))
    return app.test_client(), calls, push(store, "a:b")


@pytest.mark.parametrize(
    ("method", "path", "body", "wakes"),
    [
        ("PUT", "/api/data/{knit_id}", {"add": ["c:d"]}, 1),  # a tag change: matching may change
        ("PUT", "/api/data/unknown", {"add": ["c:d"]}, 0),  # refused: nothing changed
        ("GET", "/api/data/", None, 0),
        ("GET", "/api/runs/", None, 0),
        ("PUT", "/api/runs/unknown/retry", None, 0),
    ],
)
def test_a_write_that_worked_wakes_the_engine_once(woken, method, path, body, wakes):
    client, calls, knit_id = woken
    client.open(path.format(knit_id=knit_id), method=method, json=body)
    assert len(calls) == wakes
