"""The console's graphs: the DOT of ``knit data lineage`` and ``knit plan graph`` (knit.graphs),
read from the store instead of over HTTP, drawn to SVG by Graphviz's ``dot``."""

from __future__ import annotations

import shutil
import subprocess

from knit import graphs

from ..api import render
from ..errors import BadRequest, KnitfabError, NotFound, ServiceUnavailable
from ..store import data, lineage, plans, runs
from ..store.db import Store

MAX_NODES = 2000  # a larger graph is cut there: dot takes minutes past a few thousand nodes
DOT_SECONDS = 60


class StoreSource:
    """``knit.graphs.GraphSource`` over the store: the same JSON the API answers, at most
    ``budget`` items (a 400 past it: Graphviz could not draw that many anyway). What
    ``prefetch`` fetched in batches is answered from memory."""

    def __init__(self, store: Store, budget: int | None = None):
        self.store = store
        self.left = MAX_NODES if budget is None else budget
        self.data: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}

    def prefetch(self, knit_ids, run_ids) -> None:
        renderer = render.Renderer()
        self.data.update((d.knit_id, renderer.data_detail(d)) for d in data.data_details(self.store, list(knit_ids)))
        self.runs.update((r.run_id, renderer.run_detail(r)) for r in runs.run_details(self.store, list(run_ids)))

    def _spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise BadRequest(f"the graph has more than {MAX_NODES} nodes; ask for fewer steps up or down")

    def get_data(self, knit_id: str) -> dict:
        self._spend()
        return self.data.get(knit_id) or render.data(data.show_data(self.store, knit_id))

    def get_run(self, run_id: str) -> dict:
        self._spend()
        return self.runs.get(run_id) or render.run(runs.show_run(self.store, run_id))

    def get_plan(self, plan_id: str) -> dict:
        self._spend()
        return render.plan(plans.show_plan(self.store, plan_id))


class RecordingSource(StoreSource):
    """A ``StoreSource`` keeping every Data and run it answered: what a client needs to draw
    the same graph itself (``knit data lineage`` draws in its own time zone)."""

    def __init__(self, store: Store):
        super().__init__(store)
        self.answered: dict[str, dict] = {"data": {}, "runs": {}}

    def get_data(self, knit_id: str) -> dict:
        found = self.answered["data"][knit_id] = super().get_data(knit_id)
        return found

    def get_run(self, run_id: str) -> dict:
        found = self.answered["runs"][run_id] = super().get_run(run_id)
        return found


def _lineage_source(store: Store, knit_id: str, up: int | None, down: int | None, source: StoreSource) -> StoreSource:
    data_ids, run_ids = lineage.neighbourhood(store, knit_id, up, down, MAX_NODES)
    # One step may reach far more than the walk may draw: fetch no more than it could ask for
    # (what is left out is asked of the store if the walk does need it).
    source.prefetch(list(data_ids)[: MAX_NODES + 1], list(run_ids)[: MAX_NODES + 1])
    return source


def data_nodes(store: Store, knit_id: str, up: int | None, down: int | None) -> dict:
    """The DataDetails and runs ``knit data lineage`` reads to draw ``data_graph``, in one answer:
    ``{"data": {knitId: DataDetail}, "runs": {runId: Run}}``."""
    with store.read():  # one snapshot for the whole walk
        source = _lineage_source(store, knit_id, up, down, RecordingSource(store))
        try:
            graphs.lineage(source, knit_id, up, down)
        except LookupError as e:
            raise NotFound(str(e)) from None
    return source.answered


def data_graph(store: Store, knit_id: str, up: int | None, down: int | None) -> str:
    """``up``/``down`` steps (None: to the ends) around a Data, as ``knit data lineage`` traces."""
    with store.read():
        source = _lineage_source(store, knit_id, up, down, StoreSource(store))
        try:
            return graphs.lineage(source, knit_id, up, down)
        except LookupError as e:
            raise NotFound(str(e)) from None


def whole_graph(store: Store, knit_id: str | None = None, run_id: str | None = None) -> str:
    """Every Data and run connected to a Data or a run, as Knitfab's console draws it."""
    try:
        # connected() stops by itself at MAX_NODES: the source's budget is never reached
        return graphs.connected(StoreSource(store, MAX_NODES + 2), knit_id, run_id, limit=MAX_NODES)
    except LookupError as e:
        raise NotFound(str(e)) from None


def plan_graph(store: Store, plan_id: str, up: int | None, down: int | None) -> str:
    return graphs.plans(StoreSource(store), plan_id, up, down)


def to_svg(dot: str) -> bytes:
    """Graphviz's SVG of a DOT document; nodes keep their DOT names in ``<title>``."""
    if shutil.which("dot") is None:
        raise ServiceUnavailable("Graphviz is not installed on the server (apt-get install graphviz)")
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, timeout=DOT_SECONDS)
    except subprocess.TimeoutExpired:
        raise KnitfabError(f"Graphviz took more than {DOT_SECONDS} s to draw this graph") from None
    if done.returncode != 0:
        raise KnitfabError(f"Graphviz failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
