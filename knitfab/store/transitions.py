"""The one writer of ``run.status``: every status change, of one run or of a plan's runs, goes
through ``transition()``, which checks it against the tables of ``knitfab.status`` first."""

from __future__ import annotations

from ..status import RunStatus, check_transition
from ..times import now_us
from .db import Store


def transition(store: Store, current: RunStatus, new: RunStatus, where: str, *params, operation: str = "run", now=None):
    """The one writer of ``run.status``: checks the move against ``operation``'s table in
    status.py, then moves the runs in ``current`` that match ``where`` (SQL on ``run``)."""
    check_transition(current, new, operation)
    store.execute(
        f"UPDATE run SET status = ?, updated_at = ? WHERE status = ? AND ({where})",
        new.value, now or now_us(), current.value, *params,
    )  # fmt: skip
