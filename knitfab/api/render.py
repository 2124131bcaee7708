"""Knitfab's JSON (spec §2) from the store's records: the one place that knows its keys.

Key order follows Knitfab's Go structs, so answers are byte-identical to Knitfab's; optional
keys are left out as Go's ``omitempty`` does. A record met twice in one answer (the run that
made many Data, the plan of many runs) is rendered once and shared: the JSON encoder writes a
shared dict as often as it occurs, and 1,000 DataDetails of one run cost one run summary.
"""

from __future__ import annotations

from ..store.records import (
    Assignment,
    DataDetail,
    Mountpoint,
    PlanDetail,
    PlanOutput,
    PlanPoint,
    PlanSummary,
    RunDetail,
    RunPoint,
    RunSummary,
)
from ..tags import Tag
from ..times import format_ts

ON_NODE_MODES = ("may", "prefer", "must")


def tags(tags: list[Tag]) -> list[str]:
    return [f"{key}:{value}" for key, value in tags]


def mountpoint(point: Mountpoint) -> dict:
    """``{"path", "tags"}``, or ``{"tags"}`` for a log."""
    if point.path is None:
        return {"tags": tags(point.tags)}
    return {"path": point.path, "tags": tags(point.tags)}


def _point_key(point: Mountpoint) -> str:
    return "log" if point.is_log else "mountpoint"


class Renderer:
    """Renders one answer, sharing the dicts of the plans and runs it meets more than once."""

    def __init__(self) -> None:
        self._plans: dict[str, dict] = {}
        self._runs: dict[str, dict] = {}
        # by id(), with the point kept alive so its id is not reused: the store shares one
        # Mountpoint per plan input and output
        self._points: dict[int, tuple[Mountpoint, dict]] = {}

    def mountpoint(self, point: Mountpoint) -> dict:
        found = self._points.get(id(point))
        if found is None:
            found = self._points[id(point)] = (point, mountpoint(point))
        return found[1]

    # -- plans (§2.1)

    def plan_summary(self, plan: PlanSummary) -> dict:
        found = self._plans.get(plan.plan_id)
        if found is None:
            found = self._plans[plan.plan_id] = plan_summary(plan)
        return found

    def plan_point(self, link: PlanPoint) -> dict:
        return {"plan": self.plan_summary(link.plan), _point_key(link.point): mountpoint(link.point)}

    def plan_output(self, end: PlanOutput) -> dict:
        return {**mountpoint(end.point), "downstreams": [self.plan_point(d) for d in end.downstreams]}

    def plan_detail(self, plan: PlanDetail) -> dict:
        out = plan_summary(plan)
        out["inputs"] = [
            {**mountpoint(i.point), "upstreams": [self.plan_point(u) for u in i.upstreams]} for i in plan.inputs
        ]
        out["outputs"] = [self.plan_output(o) for o in plan.outputs]
        if plan.log is not None:
            out["log"] = self.plan_output(plan.log)
        out["active"] = plan.active
        if plan.on_node:
            out["on_node"] = _on_node(plan.on_node)
        if plan.resources:
            out["resources"] = plan.resources
        if plan.service_account:
            out["service_account"] = plan.service_account
        return out

    # -- runs (§2.2)

    def run_summary(self, run: RunSummary) -> dict:
        found = self._runs.get(run.run_id)
        if found is None:
            found = self._runs[run.run_id] = self._run_summary(run)
        return found

    def _run_summary(self, run: RunSummary) -> dict:
        out: dict = {"runId": run.run_id, "status": run.status.value, "updatedAt": format_ts(run.updated_at)}
        if run.exit_code is not None:
            out["exit"] = {"code": run.exit_code, "message": run.message}
        elif run.message:  # an unfinished run's complaint (runs.note): why it waits
            out["message"] = run.message
        out["plan"] = self.plan_summary(run.plan)
        return out

    def run_detail(self, run: RunDetail) -> dict:
        return {
            **self._run_summary(run),
            "inputs": [assignment(a) for a in run.inputs],
            "outputs": [assignment(a) for a in run.outputs],
            "log": None if run.log is None else assignment(run.log),
        }

    # -- Data (§2.3)

    def run_point(self, link: RunPoint) -> dict:
        return {_point_key(link.point): self.mountpoint(link.point), "run": self.run_summary(link.run)}

    def data_detail(self, data: DataDetail) -> dict:
        # The one method called per row of a long answer: empty lists skip their comprehensions.
        return {
            "knitId": data.knit_id,
            "tags": [f"{key}:{value}" for key, value in data.tags],
            "upstream": self.run_point(data.upstream),
            "downstreams": [self.run_point(d) for d in data.downstreams] if data.downstreams else [],
            "nomination": [{**mountpoint(n.point), "plan": self.plan_summary(n.plan)} for n in data.nominations]
            if data.nominations
            else [],
        }


def plan_summary(plan: PlanSummary) -> dict:
    out: dict = {"planId": plan.plan_id}
    if plan.image is not None:
        out["image"] = plan.image
    if plan.entrypoint:
        out["entrypoint"] = plan.entrypoint
    if plan.args:
        out["args"] = plan.args
    if plan.name is not None:
        out["name"] = plan.name
    if plan.annotations:
        out["annotations"] = [f"{k}={v}" for k, v in plan.annotations]
    return out


def assignment(a: Assignment) -> dict:
    return {**mountpoint(a.point), "knitId": a.knit_id}


def _on_node(rules: list[tuple[str, str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for mode, key, value in rules:
        grouped.setdefault(mode, []).append(f"{key}={value}")
    return {m: grouped[m] for m in ON_NODE_MODES if m in grouped}


# One record, or a list of one kind, as its JSON: what handlers, hooks and the console call.


def data(found: DataDetail) -> dict:
    return Renderer().data_detail(found)


def data_list(found: list[DataDetail]) -> list[dict]:
    renderer = Renderer()
    return [renderer.data_detail(d) for d in found]


def run(found: RunDetail) -> dict:
    return Renderer().run_detail(found)


def run_list(found: list[RunDetail]) -> list[dict]:
    renderer = Renderer()
    return [renderer.run_detail(r) for r in found]


def plan(found: PlanDetail) -> dict:
    return Renderer().plan_detail(found)


def plan_list(found: list[PlanDetail]) -> list[dict]:
    renderer = Renderer()
    return [renderer.plan_detail(p) for p in found]
