"""Nomination: which Data each plan input may take (spec §6.1).

A Data is nominated to an input when its producing run is done, its user tags include all of
the input's user tags, and it is the ``knit#id``/``knit#timestamp`` the input pins, if any.
Both directions are index lookups on the tag tables, never a scan of Data × plans:
``inputs_within`` goes from a tag set to the inputs it satisfies, ``nominate_input`` from an
input to the Data that carry its tags. Call these inside ``Store.write()``.
"""

from __future__ import annotations

from ..status import RunStatus
from .db import Store, json_list


def inputs_within(store: Store, tag_ids: list[int]) -> list[tuple]:
    """(input id, plan id, pinned knit id, pinned timestamp) of the inputs that have at least one
    user tag and whose user tags are all in ``tag_ids``."""
    if not tag_ids:
        return []
    return store.all(
        "SELECT i.id, i.plan_id, i.knit_id, i.timestamp FROM input_tag it JOIN input i ON i.id = it.input_id"
        " WHERE it.tag_id IN (SELECT value FROM json_each(?)) GROUP BY i.id HAVING COUNT(*) = i.n_tags",
        json_list(tag_ids),
    )


def nominate_data(store: Store, knit_id: str) -> None:
    """Recompute the nominations of one Data after a tag change or when its run is done:
    new ones are flagged *updated* for projection, stale ones removed, others kept."""
    wanted = _inputs_for(store, knit_id)
    current = set(store.column("SELECT input_id FROM nomination WHERE knit_id = ?", knit_id))
    for input_id in current - wanted:
        store.execute("DELETE FROM nomination WHERE input_id = ? AND knit_id = ?", input_id, knit_id)
    for input_id in wanted - current:
        store.execute("INSERT INTO nomination (input_id, knit_id, updated) VALUES (?, ?, 1)", input_id, knit_id)


def _inputs_for(store: Store, knit_id: str) -> set[int]:
    row = store.one(
        "SELECT d.timestamp, r.status FROM data d JOIN run r ON r.run_id = d.run_id WHERE d.knit_id = ?",
        knit_id,
    )
    if row is None or row[1] != RunStatus.DONE:
        return set()
    stamp = row[0]
    tag_ids = store.column("SELECT tag_id FROM data_tag WHERE knit_id = ?", knit_id)
    wanted = {
        input_id
        for input_id, _, pin_id, pin_ts in inputs_within(store, tag_ids)
        if pin_id in (None, knit_id) and pin_ts in (None, stamp)
    }
    # Inputs that name a Data by system tags alone.
    wanted.update(
        store.column(
            "SELECT id FROM input WHERE knit_id = ? AND n_tags = 0 AND (timestamp IS NULL OR timestamp = ?)"
            " UNION SELECT id FROM input WHERE timestamp = ? AND n_tags = 0 AND knit_id IS NULL",
            knit_id,
            stamp,
            stamp,
        )  # fmt: skip
    )
    return wanted


def nominate_input(store: Store, input_id: int) -> None:
    """Nominate every done Data that satisfies a newly registered input."""
    pin_id, pin_ts = store.one("SELECT knit_id, timestamp FROM input WHERE id = ?", input_id)
    # "+r.status": not through the status index, which would scan every done run; the tags are
    # far more selective.
    sql = "SELECT d.knit_id FROM data d JOIN run r ON r.run_id = d.run_id WHERE +r.status = 'done'"
    params: list = []
    tag_ids = store.column("SELECT tag_id FROM input_tag WHERE input_id = ?", input_id)
    if tag_ids:
        subquery, params = store.with_all_tags(tag_ids)
        sql += f" AND d.knit_id IN ({subquery})"
    if pin_id is not None:
        sql, params = sql + " AND d.knit_id = ?", params + [pin_id]
    if pin_ts is not None:
        sql, params = sql + " AND d.timestamp = ?", params + [pin_ts]
    for knit_id in store.column(sql, *params):
        store.execute(
            "INSERT OR IGNORE INTO nomination (input_id, knit_id, updated) VALUES (?, ?, 1)", input_id, knit_id
        )


def nominated(store: Store, input_id: int) -> list[str]:
    return store.column("SELECT knit_id FROM nomination WHERE input_id = ? ORDER BY knit_id", input_id)


def forget_data(store: Store, knit_ids: list[str]) -> None:
    """Drop the nominations of Data that are going away."""
    store.execute("DELETE FROM nomination WHERE knit_id IN (SELECT value FROM json_each(?))", json_list(knit_ids))
