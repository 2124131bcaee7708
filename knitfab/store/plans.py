"""Plans in the store: apply, find, show, and the mutable fields (spec §3 P1–P9, §5).

Public functions open their own transaction and return records (``records.py``).
"""

from __future__ import annotations

import json
import uuid

from .. import quantity
from ..errors import BadRequest, Conflict, NotFound
from ..paging import WHOLE, Page
from ..planspec import PlanSpec, parse_annotation, plan_hash
from ..status import activation
from ..tags import KEY_ID, KEY_TIMESTAMP, Tag, normalize
from ..times import format_ts, parse_rfc3339
from . import nominate, transitions
from .db import Store, json_list, the_one
from .records import Mountpoint, PlanDetail, PlanInput, PlanOutput, PlanPoint, PlanSummary, fields_of

UPLOADED = "knit#uploaded"


def apply_plan(store: Store, spec: PlanSpec) -> PlanDetail:
    """Register a validated plan and nominate Data to its inputs.

    :raise Conflict: an equivalent plan exists, or the plan would close a cycle.
    """
    digest = plan_hash(spec)
    with store.write():
        existing = store.one("SELECT plan_id FROM plan WHERE hash = ?", digest)
        if existing:
            raise Conflict(f"equivalent plan: {existing[0]}", reason="there are equiverent plan")
        plan_id = _insert_plan(store, spec, digest)
        if _reaches(store, start=plan_id, goal=plan_id):
            raise Conflict(
                "this plan would make a cycle: its outputs feed its own inputs, directly or through other plans",
                reason="plan spec conflics with others",
            )
        for input_id in store.column("SELECT id FROM input WHERE plan_id = ?", plan_id):
            nominate.nominate_input(store, input_id)
    return show_plan(store, plan_id)


def _insert_plan(store: Store, spec: PlanSpec, digest: str) -> str:
    plan_id = str(uuid.uuid4())
    store.execute(
        "INSERT INTO plan (plan_id, hash, image, version, active, entrypoint, args, service_account)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        plan_id, digest, spec.image, spec.version, int(spec.active),
        _json_or_none(spec.entrypoint), _json_or_none(spec.args), spec.service_account,
    )  # fmt: skip
    for rtype, qty in spec.resources.items():
        store.execute("INSERT INTO plan_resource VALUES (?, ?, ?)", plan_id, rtype, qty)
    for mode, key, value in spec.on_node:
        store.execute("INSERT INTO plan_on_node VALUES (?, ?, ?, ?)", plan_id, mode, key, value)
    for key, value in set(spec.annotations):
        store.execute("INSERT INTO plan_annotation VALUES (?, ?, ?)", plan_id, key, value)
    for mp in spec.inputs:
        _insert_input(store, plan_id, mp.path, mp.tags)
    for mp in spec.outputs:
        _insert_output(store, plan_id, mp.path, mp.tags)
    if spec.log is not None:
        _insert_output(store, plan_id, None, spec.log)
    return plan_id


def _json_or_none(items: list[str] | None) -> str | None:
    return json.dumps(items) if items else None


def _insert_input(store: Store, plan_id: str, path: str, tags: list[Tag]) -> None:
    user = [t for t in tags if not t.is_system]
    knit_id = next((t.value for t in tags if t.key == KEY_ID), None)
    stamp = next((parse_rfc3339(t.value) for t in tags if t.key == KEY_TIMESTAMP), None)
    cur = store.execute(
        "INSERT INTO input (plan_id, path, knit_id, timestamp, n_tags) VALUES (?, ?, ?, ?, ?)",
        plan_id, path, knit_id, stamp, len(user),
    )  # fmt: skip
    for tag_id in store.tag_ids(user, create=True):
        store.execute("INSERT INTO input_tag (tag_id, input_id) VALUES (?, ?)", tag_id, cur.lastrowid)


def _insert_output(store: Store, plan_id: str, path: str | None, tags: list[Tag]) -> None:
    cur = store.execute("INSERT INTO output (plan_id, path, is_log) VALUES (?, ?, ?)", plan_id, path, int(path is None))
    for tag_id in store.tag_ids(tags, create=True):
        store.execute("INSERT INTO output_tag (tag_id, output_id) VALUES (?, ?)", tag_id, cur.lastrowid)


# -- relations between plans -----------------------------------------------------------------


def downstream_inputs(store: Store, output_id: int) -> list[int]:
    """Inputs fed by an output (or log): their user tags are all on it (spec §2.1). Inputs
    pinned by ``knit#id``/``knit#timestamp`` take one Data, not a stream, so they are left out."""
    tag_ids = store.column("SELECT tag_id FROM output_tag WHERE output_id = ?", output_id)
    return [row[0] for row in nominate.inputs_within(store, tag_ids) if row[2] is None and row[3] is None]


def upstream_outputs(store: Store, input_id: int) -> list[int]:
    """Outputs (and logs) whose tags include every user tag of the input."""
    row = store.one("SELECT n_tags, knit_id, timestamp FROM input WHERE id = ?", input_id)
    if row is None or row[0] == 0 or row[1] is not None or row[2] is not None:
        return []
    return store.column(
        "SELECT ot.output_id FROM output_tag ot JOIN input_tag it ON it.tag_id = ot.tag_id"
        " WHERE it.input_id = ? GROUP BY ot.output_id HAVING COUNT(*) = ? ORDER BY ot.output_id",
        input_id, row[0],
    )  # fmt: skip


def _reaches(store: Store, start: str, goal: str) -> bool:
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        plan_id = frontier.pop()
        for output_id in store.column("SELECT id FROM output WHERE plan_id = ?", plan_id):
            for input_id in downstream_inputs(store, output_id):
                nxt = store.one("SELECT plan_id FROM input WHERE id = ?", input_id)[0]
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    return False


# -- queries ------------------------------------------------------------------------------------


def show_plan(store: Store, plan_id: str) -> PlanDetail:
    with store.read():
        return the_one(plan_details(store, [plan_id]), f"plan {plan_id} is not found")


def find_plans(
    store: Store,
    active: bool | None = None,
    image: str | None = None,
    in_tags: list[Tag] = (),
    out_tags: list[Tag] = (),
    page: Page = WHOLE,
) -> list[PlanDetail]:
    """``GET /api/plans``: every filter given must hold; in-tags all on one input, out-tags all
    on one output or the log. Ordered by planId; ``page`` of that order."""
    with store.read():
        ids = set(store.column("SELECT plan_id FROM plan"))
        if active is not None:
            ids &= set(store.column("SELECT plan_id FROM plan WHERE active = ?", int(active)))
        if image is not None:
            ids &= _plans_by_image(store, image)
        if in_tags:
            ids &= _plans_by_input_tags(store, normalize(in_tags))
        if out_tags:
            ids &= _plans_by_output_tags(store, normalize(out_tags))
        return plan_details(store, page.take(sorted(ids)))


def _plans_by_image(store: Store, image: str) -> set[str]:
    # The loose parser of plan search: last path segment split at its first colon (§1.5).
    head, _, last = image.rpartition("/")
    name, _, version = last.partition(":")
    repo = f"{head}/{name}" if head else name
    if version:
        return set(store.column("SELECT plan_id FROM plan WHERE image = ? AND version = ?", repo, version))
    return set(store.column("SELECT plan_id FROM plan WHERE image = ?", repo))


def _plans_by_input_tags(store: Store, tags: list[Tag]) -> set[str]:
    user = [t for t in tags if not t.is_system]
    ids = [t.value for t in tags if t.key == KEY_ID]
    stamps = {parse_rfc3339(t.value) for t in tags if t.key == KEY_TIMESTAMP}
    others = [t for t in tags if t.is_system and t.key not in (KEY_ID, KEY_TIMESTAMP)]
    if others or len(ids) > 1 or len(stamps) > 1:
        return set()
    sql = "SELECT id, plan_id FROM input WHERE 1=1"
    params: list = []
    if ids:
        sql, params = sql + " AND knit_id = ?", params + ids
    if stamps:
        sql, params = sql + " AND timestamp = ?", params + list(stamps)
    tag_ids = store.tag_ids(user)
    if tag_ids is None:
        return set()
    if tag_ids:
        sql += (
            " AND id IN (SELECT input_id FROM input_tag WHERE tag_id IN (SELECT value FROM json_each(?))"
            " GROUP BY input_id HAVING COUNT(*) = ?)"
        )
        params += [json_list(tag_ids), len(tag_ids)]
    return {row[1] for row in store.all(sql, *params)}


def _plans_by_output_tags(store: Store, tags: list[Tag]) -> set[str]:
    if any(t.is_system for t in tags):
        return set()
    tag_ids = store.tag_ids(tags)
    if tag_ids is None:
        return set()
    return set(
        store.column(
            "SELECT DISTINCT o.plan_id FROM output o WHERE o.id IN (SELECT output_id FROM output_tag"
            " WHERE tag_id IN (SELECT value FROM json_each(?)) GROUP BY output_id HAVING COUNT(*) = ?)",
            json_list(tag_ids),
            len(tag_ids),
        )  # fmt: skip
    )


# -- changes ---------------------------------------------------------------------------------


def set_active(store: Store, plan_id: str, active: bool) -> PlanDetail:
    """Activate or deactivate a plan; its waiting runs become deactivated and back (§6.3)."""
    before, after = activation(active)
    with store.write():
        _require_image_plan(store, plan_id)
        store.execute("UPDATE plan SET active = ? WHERE plan_id = ?", int(active), plan_id)
        transitions.transition(store, before, after, "plan_id = ?", plan_id)
    return show_plan(store, plan_id)


def change_resources(store: Store, plan_id: str, set_: dict[str, object], unset: list[str]) -> PlanDetail:
    """Set then unset resource limits (unset wins for the same type, as in Knitfab)."""
    canonical = {str(k): quantity.canonical(v) for k, v in (set_ or {}).items()}
    with store.write():
        _require_image_plan(store, plan_id)
        for rtype, qty in canonical.items():
            store.execute("INSERT OR REPLACE INTO plan_resource VALUES (?, ?, ?)", plan_id, rtype, qty)
        for rtype in unset or []:
            store.execute("DELETE FROM plan_resource WHERE plan_id = ? AND type = ?", plan_id, rtype)
    return show_plan(store, plan_id)


def change_annotations(store: Store, plan_id: str, add: list, remove: list, remove_key: list) -> PlanDetail:
    """Remove by key, remove exact pairs, then add (spec §7.3 ``plan annotate``)."""
    adds = [parse_annotation(a) for a in add or []]
    removes = [parse_annotation(a) for a in remove or []]
    with store.write():
        _require_image_plan(store, plan_id)
        for key in remove_key or []:
            store.execute("DELETE FROM plan_annotation WHERE plan_id = ? AND key = ?", plan_id, key.strip())
        for key, value in removes:
            store.execute(
                "DELETE FROM plan_annotation WHERE plan_id = ? AND key = ? AND value = ?", plan_id, key, value
            )
        for key, value in adds:
            store.execute("INSERT OR IGNORE INTO plan_annotation VALUES (?, ?, ?)", plan_id, key, value)
    return show_plan(store, plan_id)


def set_service_account(store: Store, plan_id: str, name: str | None) -> PlanDetail:
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 63):
        raise BadRequest("service_account must be a non-empty string of at most 63 characters")
    with store.write():
        _require_image_plan(store, plan_id)
        store.execute("UPDATE plan SET service_account = ? WHERE plan_id = ?", name, plan_id)
    return show_plan(store, plan_id)


def _require_image_plan(store: Store, plan_id: str) -> None:
    row = store.one("SELECT name FROM plan WHERE plan_id = ?", plan_id)
    if row is None:
        raise NotFound(f"plan {plan_id} is not found")
    if row[0] is not None:
        raise Conflict(f"{row[0]} is a pseudo plan: it cannot be changed", reason="prohibited operation")


# -- records (rendered as spec §2.1 by api/render.py) ----------------------------------------------


def plan_summaries(store: Store, plan_ids) -> dict[str, PlanSummary]:
    ids = list(dict.fromkeys(plan_ids))
    if not ids:
        return {}
    rows = store.all(
        "SELECT plan_id, image, version, name, entrypoint, args FROM plan"
        " WHERE plan_id IN (SELECT value FROM json_each(?))",
        json_list(ids),
    )
    notes: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    for plan_id, key, value in store.all(
        "SELECT plan_id, key, value FROM plan_annotation WHERE plan_id IN (SELECT value FROM json_each(?))",
        json_list(ids),
    ):
        notes[plan_id].append((key, value))
    return {row[0]: _summary(row, notes[row[0]]) for row in rows}


def _summary(row: tuple, annotations: list[tuple[str, str]]) -> PlanSummary:
    plan_id, image, version, name, entrypoint, args = row
    return PlanSummary(
        plan_id,
        None if image is None else f"{image}:{version}",
        json.loads(entrypoint) if entrypoint else None,
        json.loads(args) if args else None,
        name,
        sorted(annotations, key=lambda kv: (kv[0].encode(), kv[1].encode())),
    )


def input_points(store: Store, input_ids) -> dict[int, Mountpoint]:
    """Mountpoints of plan inputs, system tags included."""
    ids = list(dict.fromkeys(input_ids))
    if not ids:
        return {}
    user = store.tags_of("input_tag", "input_id", ids)
    out = {}
    for input_id, path, knit_id, stamp in store.all(
        "SELECT id, path, knit_id, timestamp FROM input WHERE id IN (SELECT value FROM json_each(?))",
        json_list(ids),
    ):
        tags = user[input_id]
        if knit_id is not None:
            tags.append(Tag(KEY_ID, knit_id))
        if stamp is not None:
            tags.append(Tag(KEY_TIMESTAMP, format_ts(stamp)))
        out[input_id] = Mountpoint(path, sorted(set(tags)))
    return out


def output_points(store: Store, output_ids) -> dict[int, tuple[str, Mountpoint]]:
    """(plan_id, mountpoint) of plan outputs; the log's mountpoint has no path."""
    ids = list(dict.fromkeys(output_ids))
    if not ids:
        return {}
    tags = store.tags_of("output_tag", "output_id", ids)
    return {
        output_id: (plan_id, Mountpoint(None if is_log else path, sorted(set(tags[output_id]))))
        for output_id, plan_id, path, is_log in store.all(
            "SELECT id, plan_id, path, is_log FROM output WHERE id IN (SELECT value FROM json_each(?))",
            json_list(ids),
        )
    }


def plan_details(store: Store, plan_ids: list[str]) -> list[PlanDetail]:
    summaries = plan_summaries(store, plan_ids)
    return [_detail(store, summaries[p]) for p in plan_ids if p in summaries]


def _detail(store: Store, summary: PlanSummary) -> PlanDetail:
    plan_id = summary.plan_id
    input_ids = store.column("SELECT id FROM input WHERE plan_id = ? ORDER BY path", plan_id)
    output_ids = store.column("SELECT id FROM output WHERE plan_id = ? ORDER BY path", plan_id)
    points = input_points(store, input_ids)
    outs = output_points(store, output_ids)
    ends = [PlanOutput(outs[o][1], _downstreams(store, o)) for o in output_ids]
    active, account = store.one("SELECT active, service_account FROM plan WHERE plan_id = ?", plan_id)
    return PlanDetail(
        *fields_of(summary),
        inputs=[PlanInput(points[i], _upstreams(store, i)) for i in input_ids],
        outputs=[end for end in ends if not end.point.is_log],
        log=next((end for end in ends if end.point.is_log), None),
        active=bool(active),
        on_node=store.all(
            "SELECT mode, key, value FROM plan_on_node WHERE plan_id = ? ORDER BY mode, key, value", plan_id
        ),
        resources=dict(store.all("SELECT type, quantity FROM plan_resource WHERE plan_id = ? ORDER BY type", plan_id)),
        service_account=account or None,
    )


def _upstreams(store: Store, input_id: int) -> list[PlanPoint]:
    outs = output_points(store, upstream_outputs(store, input_id))
    plans = plan_summaries(store, [plan_id for plan_id, _ in outs.values()])
    return [PlanPoint(plans[plan_id], point) for plan_id, point in outs.values()]


def _downstreams(store: Store, output_id: int) -> list[PlanPoint]:
    input_ids = downstream_inputs(store, output_id)
    points = input_points(store, input_ids)
    owners = dict(
        store.all("SELECT id, plan_id FROM input WHERE id IN (SELECT value FROM json_each(?))", json_list(input_ids))
    )
    plans = plan_summaries(store, owners.values())
    return [PlanPoint(plans[owners[i]], points[i]) for i in input_ids]
