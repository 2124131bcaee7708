"""The DOT documents of ``knit data lineage`` and ``knit plan graph``, byte for byte as Knitfab v1.6.1
prints them (spec §8): a lineage graph of Data and Runs around one Data, and a graph of Plans (each a
cluster with its input, output and log points) around one Plan.

Edges are made the way Knitfab makes them: when a node is added, every edge that was waiting for it is
created, and every edge to a neighbour that is not in the graph yet is left waiting for that neighbour.
The order of the edges in the document is the order in which they were created.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

_HEADER = "digraph G {\n\tnode [shape=record fontsize=10]\n\tedge [fontsize=10]\n\n"

# Go's html.EscapeString: the same five characters as html.escape(quote=True), but the quotes become
# numeric references (&#34; &#39;), not &quot; and &#x27;.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})

_DATA_NODE = (
    '\t"d{id}"[\n\t\tshape=none\n\t\tcolor="#1c9930"\n\t\tlabel=<\n\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#1c9930"><FONT COLOR="#FFFFFF"><B>Data</B></FONT></TD>'
    '<TD BGCOLOR="{bg}">knit#id: {label}</TD></TR>\n'
    "\t\t\t\t{system}\n"
    '\t\t\t\t<TR><TD COLSPAN="2">{tags}</TD></TR>\n'
    "\t\t\t</TABLE>\n\t\t>\n\t];\n"
)
_RUN_NODE = (
    '\t"r{id}"[\n\t\tshape=none\n\t\tcolor="#FFA500"\n\t\tlabel=<\n\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t<TR><TD BGCOLOR="#FFA500"><FONT COLOR="#FFFFFF"><B>Run</B></FONT></TD><TD>{status}</TD>'
    '<TD BGCOLOR="#FFFFFF">id: {label}</TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3"><FONT POINT-SIZE="8">last updated: {updated}</FONT></TD></TR>\n'
    '\t\t\t\t<TR><TD COLSPAN="3">{title}</TD></TR>\n'
    "\t\t\t</TABLE>\n\t\t>\n\t];\n"
)
_PLAN_BOX = (
    '\t\t"p{id}"[\n\t\t\tshape=none\n\t\t\tcolor="#DAA520"\n\t\t\tlabel=<\n\t\t\t\t<TABLE CELLSPACING="0">\n'
    '\t\t\t\t\t<TR><TD BGCOLOR="#DAA520"><FONT COLOR="#FFFFFF"><B>Plan</B></FONT></TD>'
    '<TD><FONT COLOR="{colour}">{state}</FONT></TD><TD BGCOLOR="{bg}">id: {id}</TD></TR>\n'
    '\t\t\t\t\t<TR><TD COLSPAN="3">{title}</TD></TR>\n'
    '\t\t\t\t\t<TR><TD COLSPAN="3">{annotations}</TD></TR>\n'
    "\t\t\t\t</TABLE>\n\t\t\t>\n\t\t];\n"
)
_CLUSTER = '\tsubgraph { cluster=true; style=solid; penwidth=0.3; color="#DAA520"; margin="0,0";\n'
_STATUS_COLOURS = {"deactivated": "gray", "completing": "#007700", "done": "#007700"}
_STATUS_COLOURS |= {"aborting": "red", "failed": "red"}


class GraphSource(Protocol):
    def get_data(self, knit_id: str) -> dict: ...

    def get_run(self, run_id: str) -> dict: ...

    def get_plan(self, plan_id: str) -> dict: ...


# -- text ---------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _local_time(stamp: str) -> str:
    """An API timestamp in the local zone, in Go's layout ``2006-01-02T15:04:05.999-07:00``."""
    t = datetime.fromisoformat(stamp).astimezone()
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    millis = f"{t.microsecond // 1000:03d}".rstrip("0")  # Go truncates, it does not round
    minutes = int(t.utcoffset().total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{'.' + millis if millis else ''}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _split(pair: str, separator: str) -> tuple[str, str]:
    key, _, value = pair.partition(separator)
    return key, value


def _edge(source: str, target: str, label: str = "") -> str:
    attributes = f' [label="{label}"]' if label else ""
    return f'\t"{source}" -> "{target}"{attributes};\n'


def _data_node(detail: dict, emphasized: bool) -> str:
    system, user = [], []
    for key, value in (_split(tag, ":") for tag in detail.get("tags") or []):
        if key == "knit#timestamp":
            system.append(_escape(_local_time(value)))
        elif key == "knit#transient":
            system.append(_escape(f"{key}:{value}"))
        elif key != "knit#id":
            user.append(f"<B>{_escape(key)}</B>:{_escape(value)}")
    sub = f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="8">{" | ".join(system)}</FONT></TD></TR>' if system else ""
    knit_id, bg = detail["knitId"], "#d4ecc6" if emphasized else "#FFFFFF"
    return _DATA_NODE.format(id=knit_id, bg=bg, label=_escape(knit_id), system=sub, tags="<BR/>".join(user))


def _title(plan: dict) -> str:
    return f"image = {plan['image']}" if plan.get("image") else plan.get("name") or ""


def _run_node(run: dict) -> str:
    status = _escape(run["status"])
    if status in _STATUS_COLOURS:
        status = f'<FONT COLOR="{_STATUS_COLOURS[status]}"><B>{status}</B></FONT>'
    updated = _escape(_local_time(run["updatedAt"]))
    return _RUN_NODE.format(
        id=run["runId"], status=status, label=_escape(run["runId"]), updated=updated, title=_escape(_title(run["plan"]))
    )


def _plan_box(plan: dict, emphasized: bool) -> str:
    pairs = (_split(a, "=") for a in plan.get("annotations") or [])
    annotations = "<BR/>".join(f"<B>{_escape(k)}</B>={_escape(v)}" for k, v in pairs)
    colour, state = ("#007700", "active") if plan.get("active") else ("gray", "inactive")
    bg = "#EDD9B4" if emphasized else "#FFFFFF"
    title = _escape(_title(plan))
    return _PLAN_BOX.format(id=plan["planId"], colour=colour, state=state, bg=bg, title=title, annotations=annotations)


def _point(node: str, margin: bool) -> str:
    extra = ', margin="0,0"' if margin else ""
    return f'\t\t"{node}"[shape=point, color="#1c9930"{extra}];\n'


def _inner_edge(source: str, target: str, label: str) -> str:
    return f'\t\t"{source}" -> "{target}" [label="{label}", weight=10, penwidth=0.3];\n'


def _plan_cluster(plan: dict, emphasized: bool) -> str:
    node = f"p{plan['planId']}"
    parts = [_CLUSTER]
    for path in (i["path"] for i in plan.get("inputs") or []):
        parts += [_point(f"{node}@{path}", False), _inner_edge(f"{node}@{path}", node, path)]
    parts.append(_plan_box(plan, emphasized))
    for point, label in _plan_exits(plan):
        parts += [_point(point, True), _inner_edge(node, point, label)]
    return "".join(parts) + "\t}\n"


def _plan_exits(plan: dict) -> list[tuple[str, str]]:
    """(node id, label) of the output points, then the log point."""
    exits = [(f"p{plan['planId']}@{o['path']}", o["path"]) for o in plan.get("outputs") or []]
    return exits + ([(f"p{plan['planId']}@log", "(log)")] if plan.get("log") is not None else [])


# -- the graph ----------------------------------------------------------------------------------------


class _Graph:
    def __init__(self) -> None:
        self.data: dict[str, tuple[dict, bool]] = {}
        self.runs: dict[str, dict] = {}
        self.plans: dict[str, tuple[dict, bool]] = {}
        self.roots = 0
        self.edges: list[str] = []
        self._nodes: set[str] = set()
        self._waiting: dict[str, list[str]] = {}

    def _arrive(self, node: str) -> None:
        self._nodes.add(node)
        self.edges += self._waiting.pop(node, [])

    def _expect(self, node: str, edge: str) -> None:
        """``edge`` is made when ``node`` arrives; if it is here already, that node made it on arrival."""
        if node not in self._nodes:
            self._waiting.setdefault(node, []).append(edge)

    def add_data(self, detail: dict, emphasized: bool = False) -> None:
        knit_id = detail["knitId"]
        self.data[knit_id] = (detail, emphasized)
        self._arrive(f"d{knit_id}")
        upstream = detail.get("upstream") or {}
        run = f"r{upstream['run']['runId']}" if upstream.get("run") else None
        label = "(log)" if upstream.get("log") is not None else (upstream.get("mountpoint") or {}).get("path")
        if run and label is not None:
            self._expect(run, _edge(run, f"d{knit_id}", label))
        for down in detail.get("downstreams") or []:
            run = f"r{down['run']['runId']}"
            self._expect(run, _edge(f"d{knit_id}", run, down["mountpoint"]["path"]))

    def add_run(self, run: dict) -> None:
        node = f"r{run['runId']}"
        self.runs[run["runId"]] = run
        self._arrive(node)
        for given in run.get("inputs") or []:
            self._expect(f"d{given['knitId']}", _edge(f"d{given['knitId']}", node, given["path"]))
        for made, label in _run_products(run):
            self._expect(f"d{made}", _edge(node, f"d{made}", label))
        if not run.get("inputs"):
            self.edges.append(_edge(f"root#{self.roots}", node))
            self.roots += 1

    def add_plan(self, plan: dict, emphasized: bool = False) -> None:
        plan_id = plan["planId"]
        self.plans[plan_id] = (plan, emphasized)
        entries = [(f"p{plan_id}@{i['path']}", i) for i in plan.get("inputs") or []]
        for node in [entry for entry, _ in entries] + [point for point, _ in _plan_exits(plan)]:
            self._arrive(node)
        for entry, given in entries:
            for source in map(_upstream_point, given.get("upstreams") or []):
                self._expect(source, _edge(source, entry))
        for point, downstream in _plan_feeds(plan):
            target = f"p{downstream['plan']['planId']}@{downstream['mountpoint']['path']}"
            self._expect(target, _edge(point, target))

    def dot(self) -> str:
        nodes = [_data_node(d, e) for d, e in self.data.values()] + [_run_node(r) for r in self.runs.values()]
        nodes += [_plan_cluster(p, e) for p, e in self.plans.values()]
        nodes += [f'\t"root#{k}"[shape=Mdiamond];\n' for k in range(self.roots)]
        return _HEADER + "".join(nodes) + "\n" + "".join(self.edges) + "\n}"


def _run_products(run: dict) -> list[tuple[str, str]]:
    """(knitId, edge label) of a run's outputs, then of its log."""
    made = [(o["knitId"], o["path"]) for o in run.get("outputs") or []]
    return made + ([(run["log"]["knitId"], "(log)")] if run.get("log") else [])


def _upstream_point(upstream: dict) -> str:
    plan_id = upstream["plan"]["planId"]
    return f"p{plan_id}@log" if upstream.get("log") is not None else f"p{plan_id}@{upstream['mountpoint']['path']}"


def _plan_feeds(plan: dict) -> Iterator[tuple[str, dict]]:
    """(point node id, downstream) for every downstream of the outputs, then of the log."""
    for output in plan.get("outputs") or []:
        yield from ((f"p{plan['planId']}@{output['path']}", d) for d in output.get("downstreams") or [])
    yield from ((f"p{plan['planId']}@log", d) for d in (plan.get("log") or {}).get("downstreams") or [])


# -- data lineage (§8.1) ------------------------------------------------------------------------------


def data_lineage(
    source: GraphSource, knit_id: str, upstream: bool = True, downstream: bool = True, depth: int | None = 3
) -> str:
    """The DOT text of ``knit data lineage``; ``depth=None`` follows the lineage to its ends."""
    return lineage(source, knit_id, depth if upstream else 0, depth if downstream else 0)


def lineage(source: GraphSource, knit_id: str, up: int | None = 3, down: int | None = 3) -> str:
    """The lineage of a Data, ``up`` steps upstream and ``down`` downstream (None: to the ends)."""
    graph = _Graph()
    for depth, step in ((up, _upstream_step), (down, _downstream_step)):
        if depth != 0:
            _trace(source, graph, knit_id, depth, step)
    return graph.dot()


def connected(source: GraphSource, knit_id: str | None = None, run_id: str | None = None, limit: int = 2000) -> str:
    """The whole connected graph of Data and Runs around a Data or a run (at most ``limit`` of
    each), as Knitfab's web console draws it."""
    graph, data, runs = _Graph(), [knit_id] if knit_id else [], [run_id] if run_id else []
    while (data or runs) and len(graph.data) + len(graph.runs) < limit:
        if data:
            detail = _ensure_data(source, graph, data.pop(), emphasized=not graph.data)
            runs += [d["run"]["runId"] for d in detail.get("downstreams") or []]
            runs.append(detail["upstream"]["run"]["runId"])
        elif (run := runs.pop()) not in graph.runs:
            found = source.get_run(run)
            graph.add_run(found)
            data += [d["knitId"] for d in found.get("inputs") or []] + [m for m, _ in _run_products(found)]
        data = [d for d in data if d not in graph.data]
    return graph.dot()


_Step = Callable[[GraphSource, _Graph, str, bool], list[str]]


def _trace(source: GraphSource, graph: _Graph, knit_id: str, depth: int | None, step: _Step) -> None:
    frontier, done = [knit_id], 0
    while frontier and (depth is None or done < depth):
        frontier = [found for each in frontier for found in step(source, graph, each, done == 0)]
        done += 1


def _upstream_step(source: GraphSource, graph: _Graph, knit_id: str, entry: bool) -> list[str]:
    run_id = _ensure_data(source, graph, knit_id, entry)["upstream"]["run"]["runId"]
    if run_id in graph.runs:
        return []
    run = source.get_run(run_id)
    graph.add_run(run)
    for made, _ in _run_products(run):
        _ensure_data(source, graph, made)
    inputs = [given["knitId"] for given in run.get("inputs") or []]
    for given in inputs:
        _ensure_data(source, graph, given)
    return inputs


def _downstream_step(source: GraphSource, graph: _Graph, knit_id: str, entry: bool) -> list[str]:
    found = []
    for down in _ensure_data(source, graph, knit_id, entry).get("downstreams") or []:
        if down["run"]["runId"] in graph.runs:
            continue
        run = source.get_run(down["run"]["runId"])
        graph.add_run(run)
        for given in run.get("inputs") or []:
            _ensure_data(source, graph, given["knitId"])
        products = [made for made, _ in _run_products(run)]
        for made in products:
            _ensure_data(source, graph, made)
        found += products
    return found


def _ensure_data(source: GraphSource, graph: _Graph, knit_id: str, emphasized: bool = False) -> dict:
    if knit_id not in graph.data:
        graph.add_data(_fetch_data(source, knit_id), emphasized)
    return graph.data[knit_id][0]


class Missing(LookupError):
    """A Data the graph needs is not found (the source's own not-found, whatever its kind)."""


def _fetch_data(source: GraphSource, knit_id: str) -> dict:
    missing = f"data not found: {knit_id}"
    try:
        detail = source.get_data(knit_id)
    except Exception as e:
        if isinstance(e, LookupError) or getattr(e, "status", None) == 404:
            raise Missing(missing) from e
        raise
    if not detail:
        raise Missing(missing)
    return detail


# -- plan graph (§8.3) --------------------------------------------------------------------------------


def plan_graph(
    source: GraphSource, plan_id: str, upstream: bool = True, downstream: bool = True, depth: int | None = 3
) -> str:
    """The DOT text of ``knit plan graph``; ``depth=None`` follows the plans to their ends."""
    return plans(source, plan_id, depth if upstream else 0, depth if downstream else 0)


def plans(source: GraphSource, plan_id: str, up: int | None = 3, down: int | None = 3) -> str:
    """The plan graph around a plan, ``up`` steps upstream and ``down`` downstream (None: to the ends)."""
    graph = _Graph()
    start = source.get_plan(plan_id)
    graph.add_plan(start, emphasized=True)
    for depth, neighbours in ((up, _plans_upstream), (down, _plans_downstream)):
        if depth != 0:
            _spread(source, graph, start, depth, neighbours)
    return graph.dot()


def _spread(
    source: GraphSource, graph: _Graph, start: dict, depth: int | None, neighbours: Callable[[dict], list[str]]
) -> None:
    leaves, left = [start], depth
    while leaves and left != 0:
        fresh = []
        for plan_id in (found for leaf in leaves for found in neighbours(leaf)):
            if plan_id not in graph.plans:
                fresh.append(source.get_plan(plan_id))
                graph.add_plan(fresh[-1])
        leaves, left = fresh, None if left is None else left - 1


def _plans_upstream(plan: dict) -> list[str]:
    inputs = plan.get("inputs") or []
    return [up["plan"]["planId"] for given in inputs for up in given.get("upstreams") or []]


def _plans_downstream(plan: dict) -> list[str]:
    return [down["plan"]["planId"] for _, down in _plan_feeds(plan)]
