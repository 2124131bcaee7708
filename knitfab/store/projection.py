"""Projection: one run per new combination of nominated Data (spec §6.2).

Each *updated* nomination is a trigger: its Data crossed with the nominations of the plan's
other inputs. The database's unique key on (plan, combination) is what makes a combination run
only once, whatever the races, re-tags or deleted (invalidated) runs: a combination already
present is simply not inserted again.

Projection works in bounded batches (``Projector.batch``) so that the engine's other stages run
between them: a plan with 22,500 new combinations holds back other plans' runs by one batch, not
by all of them. A trigger's combinations are walked in order (the product of knitId-sorted
nominations); where a walk stopped is kept in memory only: after a restart it starts again from
the beginning and the unique key skips what exists. Combinations that sort before the resume
point but appeared since involve a new nomination, which is a trigger of its own.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterator, Sequence

from ..status import RunStatus, initial_status
from . import runs
from .db import Store
from .nominate import nominated

log = logging.getLogger("knitfab.engine")
BATCH = 128  # combinations examined per batch (each one a run inserted or found present)
_ANY_TRIGGER = "SELECT 1 FROM nomination WHERE updated = 1 LIMIT 1"  # the partial index nomination_updated
_END = object()


class Projector:
    """Batches of projection, shared round-robin between the plans that have triggers."""

    def __init__(self, store: Store, size: int = BATCH):
        self.store = store
        self.size = size
        self.settled = 0  # triggers fully projected, for tests and one-shot use
        self._resume: dict[tuple[int, str], tuple[str, ...]] = {}
        self._last_plan = 0  # the key (first input id) of the plan served last
        self._order: dict[str, int] = {}
        self._moved: dict[tuple[int, str], tuple[str, ...] | None] = {}  # this batch's, applied once committed

    def batch(self, now: int | None = None) -> int:
        """One transaction examining at most ``size`` combinations (a trigger with nothing to
        cross counts as one); returns how many. Each plan with triggers gets an equal share, the
        order rotating between batches; a plan whose projection raises is logged and skipped
        (its triggers stay for the next batch) so it cannot stop the others."""
        self._moved = {}
        if not self._resume and not self.store.one(_ANY_TRIGGER):
            return 0  # nothing to project: no write transaction for a tick with nothing to do
        with self.store.write():
            plans = self._pending_plans()
            share, spent = max(1, self.size // max(1, len(plans))), 0
            for plan_id in plans:
                if spent >= self.size:
                    break
                spent += self._plan_in_savepoint(plan_id, min(share, self.size - spent), now)
                self._last_plan = self._order[plan_id]
        if not plans:
            self._resume.clear()  # nothing in progress: entries left are of vanished triggers
        for key, last in self._moved.items():
            if last is None:
                self._resume.pop(key, None)
                self.settled += 1
            else:
                self._resume[key] = last
        return spent

    def _pending_plans(self) -> list[str]:
        """Plans with triggers, in the order they were applied (their first input's id),
        starting after the plan served last."""
        rows = self.store.all(
            "SELECT MIN(i.id), i.plan_id FROM nomination n JOIN input i ON i.id = n.input_id"
            " WHERE n.updated = 1 GROUP BY i.plan_id ORDER BY 1"
        )
        self._order = {plan_id: key for key, plan_id in rows}
        turn = bisect.bisect_right([key for key, _ in rows], self._last_plan)
        return [plan_id for _, plan_id in rows[turn:] + rows[:turn]]

    def _plan_in_savepoint(self, plan_id: str, budget: int, now: int | None) -> int:
        moved = dict(self._moved)
        try:
            with self.store.db.atomic():  # a savepoint: a failing plan leaves no half of its batch
                return self._project_plan(plan_id, budget, now)
        except Exception:
            self._moved = moved
            log.exception("projection of plan %s failed; its new runs wait for the next batch", plan_id)
            return 0

    def _project_plan(self, plan_id: str, budget: int, now: int | None) -> int:
        triggers = self.store.all(
            "SELECT n.input_id, n.knit_id FROM nomination n JOIN input i ON i.id = n.input_id"
            " WHERE n.updated = 1 AND i.plan_id = ? ORDER BY n.input_id, n.knit_id LIMIT ?",
            plan_id, budget,
        )  # fmt: skip
        status, spent = _initial_status(self.store, plan_id), 0
        for input_id, knit_id in triggers:
            if spent >= budget:
                break
            spent += self._project_trigger(plan_id, input_id, knit_id, budget - spent, status, now)
        return spent

    def _project_trigger(self, plan_id: str, input_id: int, knit_id: str, budget: int, status, now) -> int:
        key = (input_id, knit_id)
        others = self.store.column("SELECT id FROM input WHERE plan_id = ? AND id != ? ORDER BY id", plan_id, input_id)
        walk = product_after([nominated(self.store, other) for other in others], self._resume.get(key))
        picks = list(itertools.islice(walk, budget))
        for picked in picks:
            assignment = {input_id: knit_id, **dict(zip(others, picked, strict=True))}
            runs.create_run(self.store, plan_id, assignment, status, now)
        if next(walk, _END) is not _END:
            self._moved[key] = picks[-1]
            return len(picks)
        self.store.execute("UPDATE nomination SET updated = 0 WHERE input_id = ? AND knit_id = ?", input_id, knit_id)
        self._moved[key] = None
        return max(1, len(picks))


def project_all(store: Store, now: int | None = None) -> int:
    """Project everything pending, batch after batch (tests and one-shot use); returns the
    number of triggers handled."""
    projector = Projector(store)
    while projector.batch(now):
        pass
    return projector.settled


def product_after(choices: Sequence[Sequence[str]], last: tuple[str, ...] | None) -> Iterator[tuple[str, ...]]:
    """The tuples of ``itertools.product(*choices)`` (each choice sorted) that come after
    ``last`` in lexicographic order; all of them when ``last`` is None."""
    if last is None:
        yield from itertools.product(*choices)
        return
    if not choices:
        return
    head, rest = choices[0], choices[1:]
    i = bisect.bisect_left(head, last[0])
    if i < len(head) and head[i] == last[0]:
        for tail in product_after(rest, last[1:]):
            yield (head[i], *tail)
        i += 1
    for first in head[i:]:
        for tail in itertools.product(*rest):
            yield (first, *tail)


def _initial_status(store: Store, plan_id: str) -> RunStatus:
    (active,) = store.one("SELECT active FROM plan WHERE plan_id = ?", plan_id)
    return initial_status(bool(active))
