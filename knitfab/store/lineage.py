"""The neighbourhood of a Data in its lineage, in a few queries per step (spec §8.2's walk).

``knit data lineage`` walks one node at a time: a Data, the run that made it, that run's inputs
and outputs, and so on. Asked node by node, a 1,000-node graph costs 1,000 DataDetails of a
dozen queries each. Here the same walk goes a step at a time over the link tables only, so the
console can fetch every DataDetail and run it will be asked for in two batches.
"""

from __future__ import annotations

from .db import Store, json_list

_IN = "IN (SELECT value FROM json_each(?))"


def neighbourhood(store: Store, knit_id: str, up: int | None, down: int | None, limit: int) -> tuple[set, set]:
    """(knitIds, runIds) a lineage walk of ``up``/``down`` steps (None: to the ends) around
    ``knit_id`` reads: every one of them, or some more. The walk stops once it holds more than
    ``limit`` nodes: the caller refuses a graph that big anyway."""
    data, runs = {knit_id}, set()
    for depth, step in ((up, _upstream), (down, _downstream)):
        frontier, done = {knit_id}, 0
        while frontier and (depth is None or done < depth) and len(data) + len(runs) <= limit:
            stepped = step(store, frontier) - runs
            made, given = _products(store, stepped), _inputs(store, stepped)
            runs |= stepped
            frontier = (given if step is _upstream else made) - data
            data |= made | given
            done += 1
    return data, runs


def _upstream(store: Store, knit_ids: set[str]) -> set[str]:
    """The runs that made these Data."""
    return set(store.column(f"SELECT run_id FROM data WHERE knit_id {_IN}", json_list(knit_ids)))


def _downstream(store: Store, knit_ids: set[str]) -> set[str]:
    """The runs that read these Data (as a DataDetail's downstreams: invalidated ones left out)."""
    return set(
        store.column(
            f"SELECT a.run_id FROM assign a JOIN run r ON r.run_id = a.run_id WHERE a.knit_id {_IN}"
            " AND r.status != 'invalidated'",
            json_list(knit_ids),
        )
    )


def _products(store: Store, run_ids: set[str]) -> set[str]:
    """The outputs and logs of these runs."""
    return set(store.column(f"SELECT knit_id FROM data WHERE run_id {_IN}", json_list(run_ids))) if run_ids else set()


def _inputs(store: Store, run_ids: set[str]) -> set[str]:
    return set(store.column(f"SELECT knit_id FROM assign WHERE run_id {_IN}", json_list(run_ids))) if run_ids else set()
