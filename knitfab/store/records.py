"""What the store answers about Plans, runs and Data: small typed records, read-only by contract.

Knitfab's JSON (spec §2) is rendered from them in one place, ``knitfab/api/render.py``; the
store knows nothing of camelCase keys. Tags are kept sorted and unique, system tags included, so
a renderer only spells them. Records are plain slotted dataclasses, not frozen ones: a list of
1,000 DataDetails builds several thousand of them, and a frozen ``__init__`` costs four times as
much.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..status import RunStatus
from ..tags import Tag


def fields_of(record) -> list:
    """A record's fields in order: how a detail starts from its summary (``RunDetail(*fields_of(s), ...)``)."""
    return [getattr(record, f.name) for f in fields(record)]


@dataclass(slots=True)
class Mountpoint:
    """A plan's input or output: its path (None for the log) and tags."""

    path: str | None
    tags: list[Tag]

    @property
    def is_log(self) -> bool:
        return self.path is None


@dataclass(slots=True)
class PlanSummary:
    plan_id: str
    image: str | None  # "name:version"; None for the pseudo plans of uploads and imports
    entrypoint: list[str] | None
    args: list[str] | None
    name: str | None  # the pseudo plans' name
    annotations: list[tuple[str, str]]  # (key, value), in byte order


@dataclass(slots=True)
class PlanPoint:
    """A mountpoint of another plan: what feeds a plan's input, or reads its output."""

    plan: PlanSummary
    point: Mountpoint


@dataclass(slots=True)
class PlanInput:
    point: Mountpoint
    upstreams: list[PlanPoint]


@dataclass(slots=True)
class PlanOutput:
    point: Mountpoint
    downstreams: list[PlanPoint]


@dataclass(slots=True)
class PlanDetail(PlanSummary):
    inputs: list[PlanInput]
    outputs: list[PlanOutput]
    log: PlanOutput | None
    active: bool
    on_node: list[tuple[str, str, str]]  # (mode, key, value), sorted
    resources: dict[str, str]
    service_account: str | None


@dataclass(slots=True)
class RunSummary:
    run_id: str
    status: RunStatus
    updated_at: int  # µs since the epoch
    exit_code: int | None
    message: str  # the exit message once ended; before, why the run waits (runs.note)
    plan: PlanSummary


@dataclass(slots=True)
class Assignment:
    """A Data at a mountpoint of a run."""

    point: Mountpoint
    knit_id: str


@dataclass(slots=True)
class RunDetail(RunSummary):
    inputs: list[Assignment]  # by path
    outputs: list[Assignment]  # by path, the log apart
    log: Assignment | None


@dataclass(slots=True)
class RunPoint:
    """A run and the mountpoint through which it wrote or read a Data."""

    point: Mountpoint
    run: RunSummary


@dataclass(slots=True)
class DataDetail:
    knit_id: str
    tags: list[Tag]
    upstream: RunPoint
    downstreams: list[RunPoint]  # the runs reading it, by (updatedAt, runId)
    nominations: list[PlanPoint]  # the plan inputs it matches, by (planId, path)
