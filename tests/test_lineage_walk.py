"""The lineage answer walks the link tables a step at a time, then fetches every node it will be
asked for in two batches (store/lineage.py, console/graphs.py): the same answer as asking node by
node, for a number of queries that grows with the steps, not with the nodes."""

from __future__ import annotations

import pytest
from fake_runner import FakeRunner
from helpers import apply, push

from knit import graphs
from knitfab.console.graphs import MAX_NODES, RecordingSource, StoreSource, data_graph, data_nodes
from knitfab.engine import Engine
from knitfab.store.lineage import neighbourhood

DEPTHS = [(None, None), (1, 0), (0, 2), (2, 1), (0, None), (3, 3)]


def chain(store, inputs: int) -> dict[str, str]:
    """Three plans in a chain, each reading the previous output and one shared parameter, run for
    ``inputs`` Data; the knitIds of the parameter and of the first input."""
    for step in range(3):
        apply(store, {"/in/x": [f"step:{step}"], "/in/p": ["kind:param"]}, {"/out/x": [f"step:{step + 1}"]},
              log={"tags": ["kind:log"]}, args=["succeed"], image=f"example.com/step{step}:v1")  # fmt: skip
    found = {"param": push(store, "kind:param")}
    for i in range(inputs):
        found.setdefault("input", push(store, "step:0", f"input:{i}"))
    engine = Engine(store, FakeRunner(store.layout))
    while engine.tick():
        pass
    return found


def walked(store, knit_id, up, down) -> dict:
    """What the node-by-node walk asks for, and the answers: ``{"data": {...}, "runs": {...}}``."""
    source = RecordingSource(store)  # nothing prefetched: each node is asked of the store
    graphs.lineage(source, knit_id, up, down)
    return source.answered


@pytest.mark.parametrize(("up", "down"), DEPTHS)
def test_the_neighbourhood_holds_every_node_the_walk_asks_for(store, up, down):
    for knit_id in chain(store, inputs=3).values():
        data, runs = neighbourhood(store, knit_id, up, down, MAX_NODES)
        asked = walked(store, knit_id, up, down)
        assert set(asked["data"]) <= data and set(asked["runs"]) <= runs


@pytest.mark.parametrize(("up", "down"), DEPTHS)
def test_the_batched_answer_is_the_node_by_node_answer(store, up, down):
    for knit_id in chain(store, inputs=3).values():
        assert data_nodes(store, knit_id, up, down) == walked(store, knit_id, up, down)
        assert data_graph(store, knit_id, up, down) == graphs.lineage(StoreSource(store), knit_id, up, down)


def statements(store, fn) -> int:
    """How many SQL statements ``fn`` runs on this thread's connection."""
    count = [0]
    connection = store.db.connection()
    connection.set_trace_callback(lambda sql: count.__setitem__(0, count[0] + 1))
    try:
        fn()
    finally:
        connection.set_trace_callback(None)
    return count[0]


def test_a_wider_graph_costs_no_more_queries(tmp_path):
    from knitfab.store.db import Store

    costs = []
    for inputs in (2, 8):
        store = Store(tmp_path / f"kf{inputs}")
        param = chain(store, inputs)["param"]
        assert len(data_nodes(store, param, None, None)["runs"]) == 3 * inputs + 1  # and the upload of the parameter
        costs.append(statements(store, lambda: data_nodes(store, param, None, None)))  # noqa: B023
        store.close()
    assert costs[0] == costs[1]


def test_what_is_fetched_ahead_is_bounded_by_what_a_graph_may_hold(store, monkeypatch):
    from knitfab.console import graphs as console_graphs

    param = chain(store, inputs=8)["param"]
    whole = data_nodes(store, param, None, None)
    monkeypatch.setattr(console_graphs, "MAX_NODES", 5)
    source = console_graphs._lineage_source(store, param, None, None, StoreSource(store, budget=10**6))
    assert len(source.data) <= 6 and len(source.runs) <= 6
    assert graphs.lineage(source, param, None, None) == graphs.lineage(StoreSource(store, 10**6), param, None, None)
    assert len(whole["runs"]) == 3 * 8 + 1
