"""The engine: one ``tick()`` drives every run one step along its life.

Stages, in order (Knitfab's loops, run one after another in one thread):

1. **project**: turn updated nominations into new runs (``projection``).
2. **initialize**: ``waiting`` runs get empty output directories (``runner.prepare``) → ``ready``.
3. **start**: ``ready`` runs start in order while their cpu/memory requests fit the runner's
   capacity → ``starting``.
4. **watch**: ``starting``/``running`` runs follow their worker → ``running``, ``completing``
   (exit 0) or ``aborting`` (the exit code; 254 when the worker is gone).
5. **finish**: ``completing``/``aborting`` runs have their worker stopped and cleaned up, their
   outputs moved into place, and become ``done``/``failed``; done outputs are nominated.
6. **collect garbage**: directories of dropped Data are removed.

A tick first asks which of these stages' statuses have runs (one statement) and skips the stages
that have none, unless an earlier stage of the same tick changed something: every API write wakes
the engine, most of them with nothing for it to do. A stage loads the runs it takes in one statement.

Runner calls happen outside transactions; the status changes that follow are compare-and-sets,
a stage's written together in one ``BEGIN IMMEDIATE`` once its runner calls are made, so a
user's abort in between always wins.

Fairness: projection works in batches of at most ``projection.BATCH`` combinations shared
between plans; initialize and start take at most ``batch`` runs, the plans taking turns (the
first run of every plan, then the second...), so a plan with thousands of runs holds back
another plan's run by at most one batch; watch and finish take ``batch`` runs after a per-stage
cursor (round-robin), so a stuck run never starves others.

Isolation: when a stage raises for one run, that run fails (``runs.fail``) with a message
naming the error and the others go on. Errors of the environment (``OSError``, SQLite, a
cluster client) may pass: the run is tried again on later ticks and fails once its step has
kept failing for ``patience`` seconds. An error of the run itself (a poison plan) fails it at once.

Disk: below the free-disk ``reserve`` of the data volume no run starts, and the run that has
written the most is stopped, its outputs discarded (its log kept, cut short) and failed with a
message, so the database always has room and the server recovers by itself.
"""

from .stages import Engine

__all__ = ["Engine"]
