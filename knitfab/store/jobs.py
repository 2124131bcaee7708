"""The engine's queries: which runs a stage takes next, what they use, and a run as a ``Job``.

The engine decides; this module only reads (and empties the garbage queue). Every query skips
pseudo plans (uploads, imports) with ``+p.name IS NULL``: written with "+" so that SQLite does
not start from the plan-name index and walk every run of every plan; the run status index finds
the few runs a stage wants.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..runners.protocol import Job, Mount
from ..status import LIVE, RunStatus
from .db import Store, json_list


def live_runs(store: Store) -> list[str]:
    """Runs whose worker may exist (what a runner that outlives the server reconciles against)."""
    return store.column("SELECT run_id FROM run WHERE status IN (SELECT value FROM json_each(?))", _names(LIVE))


def occupied(store: Store, statuses: Iterable[RunStatus]) -> set[RunStatus]:
    """Which of ``statuses`` some run is in now: one seek of the status index per status, so
    that an engine woken with nothing to do looks once instead of once per stage."""
    return {RunStatus(s) for s in store.column(_OCCUPIED, _names(statuses))}


_OCCUPIED = (
    "SELECT s.value FROM json_each(?) s"
    " WHERE EXISTS (SELECT 1 FROM run INDEXED BY run_by_status WHERE status = s.value)"
)


def take_turns(store: Store, statuses: Iterable[RunStatus], order: str, limit: int) -> list[str]:
    """Up to ``limit`` runs of image plans in ``statuses``, the plans taking turns: the first
    run (in ``order``) of every plan, then the second, and so on, a plan's turns counted after
    the runs it has in flight (so a plan with two runs going waits for one with none)."""
    return store.column(
        # INDEXED BY: else SQLite groups by walking every run in plan order (10^5 runs: 30 ms a call)
        "WITH busy AS (SELECT plan_id, COUNT(*) AS n FROM run INDEXED BY run_with_worker"
        " WHERE worker IS NOT NULL GROUP BY plan_id)"
        " SELECT run_id FROM (SELECT r.run_id, r.seq, r.updated_at, COALESCE(b.n, 0)"
        f" + ROW_NUMBER() OVER (PARTITION BY r.plan_id ORDER BY {order}) AS turn"
        " FROM run r JOIN plan p ON p.plan_id = r.plan_id LEFT JOIN busy b ON b.plan_id = r.plan_id"
        " WHERE r.status IN (SELECT value FROM json_each(?)) AND +p.name IS NULL) r"
        f" ORDER BY turn, {order} LIMIT ?",
        _names(statuses),
        limit,
    )


def after(store: Store, statuses: Iterable[RunStatus], cursor: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` (seq, run id) of image plans in ``statuses``, continuing after ``cursor``
    and wrapping around."""
    sql = (
        "SELECT r.seq, r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
        " WHERE r.status IN (SELECT value FROM json_each(?)) AND +p.name IS NULL AND r.seq {} ?"
        " ORDER BY r.seq LIMIT ?"
    )
    return _round_robin(store, sql, (_names(statuses),), cursor, limit)


def writing(store: Store) -> list[str]:
    """Runs of image plans whose workers may be writing outputs now."""
    return store.column(
        "SELECT r.run_id FROM run r JOIN plan p ON p.plan_id = r.plan_id"
        " WHERE r.status IN ('starting', 'running') AND +p.name IS NULL"
    )


def resources_in_use(store: Store) -> list[tuple[str, str]]:
    """(resource type, quantity text) of every run that holds a worker."""
    return store.all(
        "SELECT pr.type, pr.quantity FROM run r JOIN plan_resource pr ON pr.plan_id = r.plan_id"
        " WHERE r.worker IS NOT NULL"
    )


def garbage(store: Store, cursor: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` (rowid, knit id) of dropped Data, after ``cursor`` and wrapping around."""
    sql = "SELECT rowid, knit_id FROM garbage WHERE rowid {} ? ORDER BY rowid LIMIT ?"
    return _round_robin(store, sql, (), cursor, limit)


def _round_robin(store: Store, sql: str, params: tuple, cursor: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` rows of ``sql`` (``{}``: the comparison with the cursor; then ``?`` for
    ``params``, the cursor and the limit) after ``cursor``, then from the start up to it."""
    rows = store.all(sql.format(">"), *params, cursor, limit)
    if not cursor or len(rows) == limit:
        return rows  # nothing to wrap around to
    return rows + store.all(sql.format("<="), *params, cursor, limit - len(rows))


def collected(store: Store, knit_ids: list[str]) -> None:
    """The files of dropped Data are gone: they leave the queue (one transaction)."""
    if knit_ids:
        with store.write():
            store.execute("DELETE FROM garbage WHERE knit_id IN (SELECT value FROM json_each(?))", json_list(knit_ids))


# The whole of a run as the runner sees it, in one statement (the engine loads a run at each
# of its stages): its lists come as JSON arrays, put in order here.
_JOB = (
    "SELECT r.run_id, r.plan_id, p.image, p.version, p.entrypoint, p.args, p.service_account, r.worker,"
    " (SELECT json_group_array(json_array(i.path, a.knit_id)) FROM assign a JOIN input i ON i.id = a.input_id"
    "  WHERE a.run_id = r.run_id),"
    " (SELECT json_group_array(json_array(o.path, d.knit_id, o.is_log)) FROM data d JOIN output o ON o.id = d.output_id"
    "  WHERE d.run_id = r.run_id),"
    " (SELECT json_group_array(json_array(type, quantity)) FROM plan_resource WHERE plan_id = r.plan_id),"
    " (SELECT json_group_array(json_array(mode, key, value)) FROM plan_on_node WHERE plan_id = r.plan_id)"
    " FROM run r JOIN plan p ON p.plan_id = r.plan_id WHERE r.run_id {}"
)


def load_job(store: Store, run_id: str) -> Job:
    """A run as the runner sees it (one statement)."""
    return _job(store.one(_JOB.format("= ?"), run_id))


def load_jobs(store: Store, run_ids: list[str]) -> dict[str, Job]:
    """Runs as ``load_job`` gives each, by run id, in one statement (a stage's batch); runs that
    no longer exist are left out."""
    rows = store.all(_JOB.format("IN (SELECT value FROM json_each(?))"), json_list(run_ids))
    return {row[0]: _job(row) for row in rows}


def _job(row: tuple) -> Job:
    run_id, plan_id, image, version, entrypoint, args, account, worker, inputs, made, resources, on_node = row
    made = sorted(json.loads(made), key=lambda row: (row[0] is not None, row[0] or ""))  # as ORDER BY path
    return Job(
        run_id=run_id,
        plan_id=plan_id,
        image=f"{image}:{version}",
        entrypoint=json.loads(entrypoint) if entrypoint else [],
        args=json.loads(args) if args else [],
        inputs=[Mount(path, knit_id) for path, knit_id in sorted(json.loads(inputs))],
        outputs=[Mount(path, knit_id) for path, knit_id, is_log in made if not is_log],
        log=next((knit_id for _, knit_id, is_log in made if is_log), None),
        resources=dict(json.loads(resources)),
        on_node=[tuple(row) for row in sorted(json.loads(on_node))],
        service_account=account,
        worker=worker,
    )


def _names(statuses: Iterable[RunStatus]) -> str:
    return json_list(s.value for s in statuses)
