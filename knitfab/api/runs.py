"""``/api/runs``: find, show, stop, retry, delete runs and read their logs (spec §3 R1–R7, §4.3)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..errors import NotFound, ServiceUnavailable
from ..paging import parse_page
from ..status import RunStatus, parse_status_list
from ..store import runs
from ..store.jobs import load_job
from . import render
from .web import comma_list, reply, services, store, time_window

bp = Blueprint("runs", __name__, url_prefix="/api/runs")
S = RunStatus
NOT_STARTED = (S.DEACTIVATED, S.WAITING, S.READY)


@bp.get("/")
def find():
    statuses = parse_status_list(",".join(comma_list("status")))
    since, until = time_window()
    found = runs.find_runs(
        store(),
        plan_ids=comma_list("plan"),
        knit_ids_in=comma_list("knitIdInput"),
        knit_ids_out=comma_list("knitIdOutput"),
        statuses=statuses,
        since=since,
        until=until,
        page=parse_page(request.args),
    )
    return reply(render.run_list(found))


@bp.get("/<run_id>/")
def show(run_id: str):
    return reply(render.run(runs.show_run(store(), run_id)))


@bp.put("/<run_id>/abort")
def abort(run_id: str):
    return reply(render.run(runs.abort(store(), run_id)))


@bp.put("/<run_id>/tearoff")
def tearoff(run_id: str):
    return reply(render.run(runs.tearoff(store(), run_id)))


@bp.put("/<run_id>/retry")
def retry(run_id: str):
    runs.retry(store(), run_id)
    return Response(status=200)


@bp.delete("/<run_id>/")
def delete(run_id: str):
    runs.delete(store(), run_id)
    return Response(status=204)


@bp.get("/<run_id>/log")
def log(run_id: str):
    run = runs.show_run(store(), run_id)
    if run.status == S.INVALIDATED or run.log is None:
        raise NotFound(f"run {run_id} has no log")
    if run.status in NOT_STARTED:
        raise ServiceUnavailable("please retry later.")
    if run.status in (S.STARTING, S.RUNNING) and services().runner is not None:
        job = load_job(store(), run_id)
        chunks = services().runner.logs(job, follow="follow" in request.args)
    else:
        chunks = _read(store().layout.current(run.log.knit_id) / "log")
    return Response(chunks, content_type="application/octet-stream")


def _read(path):
    if not path.exists():
        return
    with open(path, "rb") as f:
        while chunk := f.read(65536):
            yield chunk
