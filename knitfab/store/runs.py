"""Runs in the store: creation, status changes, finishing, retry and delete (spec §6.2–§6.8).

Functions named with a leading verb and no transaction of their own (``create_run``,
``set_status``) must be called inside ``Store.write()``; the user operations (``abort``,
``tearoff``, ``retry``, ``delete``) and queries open their own and return records (``records.py``).
"""

from __future__ import annotations

import uuid

from ..errors import Conflict, InvalidTransition, NotFound
from ..paging import WHOLE, Page
from ..status import REMOVABLE, RESTARTABLE, RunStatus, check_transition, failure_of, initial_status
from ..times import now_us
from . import nominate, transitions
from .db import Store, json_list, the_one
from .plans import input_points, output_points, plan_summaries
from .records import Assignment, RunDetail, RunSummary, fields_of

S = RunStatus
EXIT_ABORTED = (253, "aborted by user")
EXIT_STOPPED = (0, "stopped by user")
EXIT_ENGINE = 255  # knitfab itself could not carry the run on (as for a run that cannot start)
MAX_MESSAGE = 1000  # characters of an error kept as a run's exit message


def create_run(
    store: Store, plan_id: str, assignment: dict[int, str], status: RunStatus, now: int | None = None
) -> str | None:
    """A run of ``plan_id`` over ``assignment`` (input id → knitId), with its output and log Data
    created and tagged at once. Returns None when that combination has a run already."""
    run_id = str(uuid.uuid4())
    combination = ";".join(f"{i}={k}" for i, k in sorted(assignment.items())) or None
    cur = store.execute(
        "INSERT INTO run (run_id, plan_id, status, updated_at, combination) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (plan_id, combination) DO NOTHING",
        run_id, plan_id, status.value, now or now_us(), combination,
    )  # fmt: skip
    if cur.rowcount == 0:
        return None
    for input_id, knit_id in assignment.items():
        store.execute("INSERT INTO assign (run_id, input_id, knit_id) VALUES (?, ?, ?)", run_id, input_id, knit_id)
    create_outputs(store, run_id, plan_id)
    return run_id


def create_outputs(store: Store, run_id: str, plan_id: str) -> list[str]:
    knit_ids = []
    for (output_id,) in store.all("SELECT id FROM output WHERE plan_id = ? ORDER BY id", plan_id):
        knit_id = str(uuid.uuid4())
        store.execute("INSERT INTO data (knit_id, run_id, output_id) VALUES (?, ?, ?)", knit_id, run_id, output_id)
        store.execute(
            "INSERT INTO data_tag (tag_id, knit_id) SELECT tag_id, ? FROM output_tag WHERE output_id = ?",
            knit_id, output_id,
        )  # fmt: skip
        knit_ids.append(knit_id)
    store.refresh_tag_ids(knit_ids)
    return knit_ids


def status_of(store: Store, run_id: str) -> RunStatus:
    row = store.one("SELECT status FROM run WHERE run_id = ?", run_id)
    if row is None:
        raise NotFound(f"run {run_id} is not found")
    return RunStatus(row[0])


def set_status(
    store: Store,
    run_id: str,
    new: RunStatus,
    exit: tuple[int, str] | None = None,
    only_from: frozenset[RunStatus] | None = None,
    now: int | None = None,
) -> bool:
    """Move a run along §6.3's table. With ``only_from``, a run found in another status is left
    alone and False returned: the engine's compare-and-set after slow runner calls, so a user's
    abort in between is never overwritten."""
    current = status_of(store, run_id)
    if only_from is not None and current not in only_from:
        return False
    if not check_transition(current, new):
        return False
    _write_status(store, run_id, current, new, exit, now)
    return True


def _write_status(store, run_id: str, current: RunStatus, new: RunStatus, exit, now, operation: str = "run") -> None:
    transitions.transition(store, current, new, "run_id = ?", run_id, operation=operation, now=now)
    if exit is not None:
        store.execute("UPDATE run SET exit_code = ?, exit_message = ? WHERE run_id = ?", exit[0], exit[1], run_id)


def fail(store: Store, run_id: str, message: str, now: int | None = None) -> RunStatus | None:
    """The engine gives up on a run (status.FAILURE): an unfinished run goes to aborting with
    exit 255 and ``message``; a run already aborting whose finishing failed goes to failed at
    once, its exit code kept. Call it inside ``Store.write()``; None for a finished run."""
    current = status_of(store, run_id)
    new = failure_of(current)
    if new is None:
        return None
    message = message[:MAX_MESSAGE]
    if new == S.FAILED:
        store.execute(
            "UPDATE run SET exit_code = COALESCE(exit_code, ?), exit_message = ? WHERE run_id = ?",
            EXIT_ENGINE, message, run_id,
        )  # fmt: skip
        return finish(store, run_id, now)
    _write_status(store, run_id, current, new, (EXIT_ENGINE, message), now, operation="fail")
    return new


def note(store: Store, run_id: str, message: str) -> None:
    """A message for a run that has not ended (why it still waits), kept until it ends."""
    store.execute("UPDATE run SET exit_message = ? WHERE run_id = ? AND exit_code IS NULL", message or None, run_id)


def set_worker(store: Store, run_id: str, worker: str | None) -> None:
    store.execute("UPDATE run SET worker = ? WHERE run_id = ?", worker, run_id)


def outputs_of(store: Store, run_id: str) -> list[str]:
    return store.column("SELECT knit_id FROM data WHERE run_id = ? ORDER BY knit_id", run_id)


# -- user operations ----------------------------------------------------------------------------


def abort(store: Store, run_id: str) -> RunDetail:
    """``knit run stop --fail``: to aborting with 253 ``aborted by user``."""
    with store.write():
        set_status(store, run_id, S.ABORTING, exit=EXIT_ABORTED)
    return show_run(store, run_id)


def tearoff(store: Store, run_id: str) -> RunDetail:
    """``knit run stop``: to completing with 0 ``stopped by user``; the run counts as done."""
    with store.write():
        set_status(store, run_id, S.COMPLETING, exit=EXIT_STOPPED)
    return show_run(store, run_id)


def retry(store: Store, run_id: str) -> None:
    """Run a finished run again with fresh output Data (§6.7)."""
    with store.write():
        plan_id, current = _check_removable(store, run_id, retrying=True)
        drop_outputs(store, run_id)
        create_outputs(store, run_id, plan_id)
        (active,) = store.one("SELECT active FROM plan WHERE plan_id = ?", plan_id)
        # Knitfab puts the run back to waiting even for an inactive plan (§14.13), which then runs
        # it anyway; a deactivated plan's retried run should wait for activation like its others.
        _write_status(store, run_id, current, initial_status(bool(active)), None, None, operation="retry")
        store.execute("UPDATE run SET exit_code = NULL, exit_message = NULL WHERE run_id = ?", run_id)


def delete(store: Store, run_id: str) -> None:
    """Drop a run's outputs (§6.8). A run with inputs stays as ``invalidated`` so that its
    combination never runs again; an upload run is removed completely."""
    with store.write():
        _, current = _check_removable(store, run_id, retrying=False)
        drop_outputs(store, run_id)
        if store.one("SELECT 1 FROM assign WHERE run_id = ?", run_id):
            _write_status(store, run_id, current, S.INVALIDATED, None, None, operation="delete")
        else:
            store.execute("DELETE FROM run WHERE run_id = ?", run_id)


def _check_removable(store: Store, run_id: str, retrying: bool) -> tuple[str, RunStatus]:
    row = store.one(
        "SELECT r.status, r.worker, r.plan_id, p.name FROM run r JOIN plan p ON p.plan_id = r.plan_id"
        " WHERE r.run_id = ?",
        run_id,
    )
    if row is None or row[0] == S.INVALIDATED:
        raise NotFound(f"run {run_id} is not found")
    status, worker, plan_id, pseudo = RunStatus(row[0]), row[1], row[2], row[3]
    if retrying and pseudo:
        raise InvalidTransition("Root run cannot be retried")
    # Knitfab keeps a worker record from creation, so it refuses to delete waiting runs too
    # (§14.13); here a run that never started has nothing to wait for and can be deleted.
    allowed = RESTARTABLE if retrying else REMOVABLE
    if status not in allowed:
        raise Conflict("Wait for the run to finish, or abort it", reason="the run have not finished yet")
    if worker is not None:
        raise Conflict("its worker is still being cleaned up; retry later", reason="the run may not be finished")
    if _outputs_in_use(store, run_id):
        raise Conflict("Delete all downstreams of the run first", reason="output of the run is in use")
    return plan_id, status


def _outputs_in_use(store: Store, run_id: str) -> bool:
    return bool(
        store.one(
            "SELECT 1 FROM data d JOIN assign a ON a.knit_id = d.knit_id JOIN run r ON r.run_id = a.run_id"
            " WHERE d.run_id = ? AND r.status != 'invalidated' LIMIT 1",
            run_id,
        )
    )


def drop_outputs(store: Store, run_id: str) -> None:
    drop_data(store, outputs_of(store, run_id))


def drop_data(store: Store, knit_ids: list[str]) -> None:
    """Forget Data and queue their directories for the garbage collector. Invalidated runs that
    used them go too: with an input gone, their combination can never come back."""
    ids = json_list(knit_ids)
    dead = store.column(
        "SELECT DISTINCT a.run_id FROM assign a JOIN run r ON r.run_id = a.run_id"
        " WHERE a.knit_id IN (SELECT value FROM json_each(?)) AND r.status = 'invalidated'",
        ids,
    )
    for run_id in dead:
        store.execute("DELETE FROM assign WHERE run_id = ?", run_id)
        store.execute("DELETE FROM run WHERE run_id = ?", run_id)
    nominate.forget_data(store, knit_ids)
    store.execute("DELETE FROM data_tag WHERE knit_id IN (SELECT value FROM json_each(?))", ids)
    store.execute("DELETE FROM data WHERE knit_id IN (SELECT value FROM json_each(?))", ids)
    store.execute("INSERT OR IGNORE INTO garbage (knit_id) SELECT value FROM json_each(?)", ids)


# -- finishing ------------------------------------------------------------------------------------


def finish(store: Store, run_id: str, now: int | None = None) -> RunStatus | None:
    """completing → done, aborting → failed: stamp every output and log with ``knit#timestamp``
    and, when done, nominate them so that downstream plans run (the chain reaction).
    Call it inside ``Store.write()``, once the outputs are in place."""
    current = status_of(store, run_id)  # read once: the transaction holds the write lock
    final = {S.COMPLETING: S.DONE, S.ABORTING: S.FAILED}.get(current)
    if final is None:
        return None
    now = now or now_us()
    if check_transition(current, final):
        _write_status(store, run_id, current, final, None, now)
    set_worker(store, run_id, None)
    store.execute("UPDATE data SET timestamp = ? WHERE run_id = ?", now, run_id)
    if final == S.DONE:
        for knit_id in outputs_of(store, run_id):
            nominate.nominate_data(store, knit_id)
    return final


# -- queries: records, rendered as spec §2.2 by api/render.py ------------------------------------


def show_run(store: Store, run_id: str) -> RunDetail:
    with store.read():
        return the_one(run_details(store, [run_id]), f"run {run_id} is not found")


def find_runs(
    store: Store,
    plan_ids: list[str] = (),
    knit_ids_in: list[str] = (),
    knit_ids_out: list[str] = (),
    statuses: list[RunStatus] = (),
    since: int | None = None,
    until: int | None = None,
    page: Page = WHOLE,
) -> list[RunDetail]:
    """``GET /api/runs``: OR within a filter, AND across them; ordered by (updatedAt, runId);
    ``page`` of that order."""
    any_of = "IN (SELECT value FROM json_each(?))"
    filters = [
        (f"plan_id {any_of}", plan_ids),
        (f"run_id IN (SELECT run_id FROM assign WHERE knit_id {any_of})", knit_ids_in),
        (f"run_id IN (SELECT run_id FROM data WHERE knit_id {any_of})", knit_ids_out),
        (f"status {any_of}", [s.value for s in statuses]),
    ]
    sql, params = "SELECT run_id FROM run WHERE 1=1", []
    for condition, values in filters:
        if values:
            sql, params = f"{sql} AND {condition}", params + [json_list(values)]
    if since is not None:
        sql, params = sql + " AND updated_at >= ?", params + [since]
    if until is not None:
        sql, params = sql + " AND updated_at < ?", params + [until]
    order = " ORDER BY updated_at DESC, run_id DESC" if page.desc else " ORDER BY updated_at, run_id"
    limit, bounds = page.sql()
    with store.read():
        return run_details(store, store.column(sql + order + limit, *params, *bounds))


_STATUSES = {s.value: s for s in RunStatus}  # RunStatus(text) is an Enum lookup: slow, per row
RUN_COLUMNS = "r.run_id, r.status, r.updated_at, r.exit_code, r.exit_message, r.plan_id"


def run_summaries(store: Store, run_ids, known: list[tuple] = ()) -> dict[str, RunSummary]:
    """Summaries of runs; ``known`` rows of ``RUN_COLUMNS`` save fetching them again."""
    have = {row[0] for row in known}
    missing = [r for r in dict.fromkeys(run_ids) if r not in have]
    rows = list(known)
    if missing:
        rows += store.all(
            f"SELECT {RUN_COLUMNS} FROM run r WHERE r.run_id IN (SELECT value FROM json_each(?))", json_list(missing)
        )
    plans = plan_summaries(store, [row[5] for row in rows])
    return {
        run_id: RunSummary(run_id, _STATUSES[status], updated, code, message or "", plans[plan_id])
        for run_id, status, updated, code, message, plan_id in rows
    }


def run_details(store: Store, run_ids: list[str]) -> list[RunDetail]:
    summaries = run_summaries(store, run_ids)
    ids = json_list(summaries)
    assigns = store.all(
        "SELECT run_id, input_id, knit_id FROM assign WHERE run_id IN (SELECT value FROM json_each(?))", ids
    )
    made = store.all(
        "SELECT run_id, output_id, knit_id FROM data WHERE run_id IN (SELECT value FROM json_each(?))", ids
    )
    ins = input_points(store, [a[1] for a in assigns])
    outs = output_points(store, [m[1] for m in made])
    details = {r: RunDetail(*fields_of(s), [], [], None) for r, s in summaries.items()}
    for run_id, input_id, knit_id in assigns:
        details[run_id].inputs.append(Assignment(ins[input_id], knit_id))
    for run_id, output_id, knit_id in made:
        point = outs[output_id][1]
        if point.is_log:
            details[run_id].log = Assignment(point, knit_id)
        else:
            details[run_id].outputs.append(Assignment(point, knit_id))
    for detail in details.values():
        detail.inputs.sort(key=lambda a: a.point.path)
        detail.outputs.sort(key=lambda a: a.point.path)
    return [details[r] for r in run_ids if r in details]
