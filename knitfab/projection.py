"""Projection: one run per new combination of nominated Data (spec §6.2).

Each call takes one *updated* nomination as the trigger and crosses its Data with the
nominations of the plan's other inputs. The database's unique key on (plan, combination) is
what makes a combination run only once, whatever the races, re-tags or deleted
(invalidated) runs: a combination already present is simply not inserted again.
"""

from __future__ import annotations

import itertools

from . import runs
from .nominate import nominated
from .status import RunStatus
from .store import Store


def project_one(store: Store, now: int | None = None) -> bool:
    """Handle one updated nomination; False when there was none."""
    with store.write():
        trigger = store.one(
            "SELECT n.input_id, n.knit_id, i.plan_id FROM nomination n JOIN input i ON i.id = n.input_id"
            " WHERE n.updated = 1 LIMIT 1"
        )
        if trigger is None:
            return False
        input_id, knit_id, plan_id = trigger
        for assignment in _combinations(store, plan_id, input_id, knit_id):
            runs.create_run(store, plan_id, assignment, _initial_status(store, plan_id), now)
        store.execute("UPDATE nomination SET updated = 0 WHERE input_id = ? AND knit_id = ?", input_id, knit_id)
        return True


def project_all(store: Store, now: int | None = None) -> int:
    count = 0
    while project_one(store, now):
        count += 1
    return count


def _combinations(store: Store, plan_id: str, input_id: int, knit_id: str):
    others = store.column("SELECT id FROM input WHERE plan_id = ? AND id != ? ORDER BY id", plan_id, input_id)
    choices = [nominated(store, other) for other in others]
    for picked in itertools.product(*choices):
        yield {input_id: knit_id, **dict(zip(others, picked, strict=False))}


def _initial_status(store: Store, plan_id: str) -> RunStatus:
    (active,) = store.one("SELECT active FROM plan WHERE plan_id = ?", plan_id)
    return RunStatus.WAITING if active else RunStatus.DEACTIVATED
