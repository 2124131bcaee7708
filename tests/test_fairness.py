"""One big plan holds back another plan's runs by at most one batch (issue 9.10).

Counted in batches and ticks with the fake runner, never timed: ``bench/fairness_bench.py``
prints the delays.
"""

from decimal import Decimal

import pytest
from fake_runner import FakeRunner
from helpers import apply, push, runs_of

from knitfab.engine import Engine
from knitfab.store import projection
from knitfab.store.jobs import load_job

SIDE = 150  # 150 x 150 = 22,500 combinations, the size of the report


def big_and_small(store, side=SIDE):
    big = apply(store, {"/a": ["side:a"], "/b": ["side:b"]}, image="big:v1", args=["hang"])
    for i in range(side):
        push(store, "side:a", f"n:{i}")
        push(store, "side:b", f"n:{i}")
    small = apply(store, {"/in": ["type:trigger"]}, image="small:v1", args=["succeed"])
    return big, small


def has_worker(store, plan) -> bool:
    return any(s in ("starting", "running", "completing", "done") for _, s in runs_of(store, plan.plan_id))


@pytest.mark.slow
def test_a_trivial_run_starts_within_one_batch_of_a_22500_combination_projection(store):
    engine = Engine(store, FakeRunner(store.layout))
    big, small = big_and_small(store)
    for _ in range(3):
        engine.tick()  # the big projection is under way
    push(store, "type:trigger")
    engine.tick()
    assert has_worker(store, small)
    created = len(runs_of(store, big.plan_id))
    assert created <= 4 * projection.BATCH < SIDE * SIDE  # at most one batch more than before the push
    started = len(engine.runner.started)
    assert started <= 4 * engine.batch + 1


@pytest.mark.slow
def test_after_a_restart_the_catch_up_is_interleaved_too(store):
    engine = Engine(store, FakeRunner(store.layout))
    big, small = big_and_small(store, side=40)
    for _ in range(3):
        engine.tick()
    restarted = Engine(store, FakeRunner(store.layout))  # where the walks stopped is forgotten
    push(store, "type:trigger")
    restarted.tick()
    assert has_worker(store, small)
    while restarted.project():
        pass
    assert len(runs_of(store, big.plan_id)) == 40 * 40  # every combination once, none lost


def test_a_plan_with_runs_in_flight_waits_for_one_with_none(store):
    runner = FakeRunner(store.layout, capacity={"cpu": Decimal(2), "memory": Decimal(64 << 30)})
    engine = Engine(store, runner)
    big = apply(store, {"/in": ["type:dataset"]}, image="big:v1", args=["hang"])
    for i in range(6):
        push(store, "type:dataset", f"n:{i}")
    engine.run_until_idle()
    small = apply(store, {"/in": ["type:trigger"]}, image="small:v1", args=["succeed"])
    push(store, "type:trigger")
    engine.run_until_idle()
    assert [s for _, s in runs_of(store, small.plan_id)] == ["ready"]  # both cores taken
    first, _ = runs_of(store, big.plan_id)[0]
    runner.finish(load_job(store, first), 0)
    engine.run_until_idle()
    assert [s for _, s in runs_of(store, small.plan_id)] == ["done"]
    (small_run,) = (r for r, _ in runs_of(store, small.plan_id))
    assert runner.started.index(small_run) == 2  # right after the two big runs that held the cores


def test_product_after_resumes_a_walk_where_it_stopped():
    choices = [["a", "b"], ["x", "y", "z"]]
    everything = list(projection.product_after(choices, None))
    assert everything == [(c, d) for c in "ab" for d in "xyz"]
    for i, last in enumerate(everything):
        assert list(projection.product_after(choices, last)) == everything[i + 1 :]
    assert list(projection.product_after([["a", "c"], ["x"]], ("b", "q"))) == [("c", "x")]  # gone since
