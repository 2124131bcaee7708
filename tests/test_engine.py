"""The engine's stages, driven tick by tick with a fake runner (no threads, no sleeps)."""

import logging
import threading
from decimal import Decimal

from fake_runner import FakeRunner
from helpers import apply, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.status import RunStatus
from knitfab.store import data, jobs, runs
from knitfab.store.jobs import load_job
from knitfab.tags import Tag
from knitfab.times import parse_rfc3339


def statuses(store, plan):
    return [s for _, s in runs_of(store, plan.plan_id)]


def test_each_stage_moves_a_run_one_step(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]})
    push(store, "type:dataset")
    assert engine.project() and statuses(store, plan) == ["waiting"]
    assert engine.initialize() and statuses(store, plan) == ["ready"]
    assert engine.start() and statuses(store, plan) == ["starting"]
    assert engine.watch() and statuses(store, plan) == ["running"]
    assert not engine.watch()  # nothing new
    ((run_id, _),) = runs_of(store, plan.plan_id)
    engine.runner.finish(load_job(store, run_id), 0)
    assert engine.watch() and statuses(store, plan) == ["completing"]
    assert engine.finish() and statuses(store, plan) == ["done"]
    assert not engine.tick()


def test_tick_stamps_changes_with_the_time_it_is_given(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    push(store, "type:dataset")
    now = parse_rfc3339("2030-01-02T03:04:05.678Z")
    while engine.tick(now):
        pass
    run = runs.find_runs(store, plan_ids=[plan.plan_id])[0]
    assert run.status == "done" and run.updated_at == now
    model = data.show_data(store, run.outputs[0].knit_id)
    assert Tag("knit#timestamp", "2030-01-02T03:04:05.678+00:00") in model.tags


def test_done_outputs_trigger_the_next_plan(store):
    engine = Engine(store, FakeRunner(store.layout))
    train = apply(store, {"/in/dataset": ["type:dataset", "mode:training"]}, {"/out/model": ["type:model"]},
                  log={"tags": ["type:log"]}, args=["succeed"])  # fmt: skip
    validate = apply(store, {"/in/dataset": ["type:dataset", "mode:test"], "/in/model": ["type:model"]},
                     log={"tags": ["type:log", "stage:validation"]}, args=["succeed"])  # fmt: skip
    push(store, "type:dataset", "mode:training")
    test_set = push(store, "type:dataset", "mode:test")
    engine.run_until_idle()
    assert statuses(store, train) == ["done"] and statuses(store, validate) == ["done"]
    (v,) = runs.find_runs(store, plan_ids=[validate.plan_id])
    model = runs.find_runs(store, plan_ids=[train.plan_id])[0].outputs[0].knit_id
    assert {i.knit_id for i in v.inputs} == {model, test_set}
    log_file = store.layout.data(v.log.knit_id) / "log"
    assert log_file.read_text() == f"run {v.run_id} exits 0\n"
    assert (store.layout.data(model) / "result").read_text().startswith("made by")


def test_a_failed_run_does_not_trigger_the_next_plan(store):
    engine = Engine(store, FakeRunner(store.layout))
    train = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["fail", "2"])
    validate = apply(store, {"/in": ["type:model"]}, args=["succeed"])
    push(store, "type:dataset")
    engine.run_until_idle()
    (run,) = runs.find_runs(store, plan_ids=[train.plan_id])
    assert run.status == "failed" and (run.exit_code, run.message) == (2, "(container main) Error")
    assert statuses(store, validate) == []


def test_a_vanished_worker_fails_the_run_with_254(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]})
    push(store, "type:dataset")
    engine.run_until_idle()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    engine.runner.vanish(run_id)
    engine.run_until_idle()
    run = runs.show_run(store, run_id)
    assert run.status == "failed" and (run.exit_code, run.message) == (254, "worker for the run is not found")


def test_a_run_that_cannot_start_fails_with_the_runners_message(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, args=["unstartable"])
    push(store, "type:dataset")
    engine.run_until_idle()
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.status == "failed" and (run.exit_code, run.message) == (255, "this job cannot start here")


def test_runs_start_in_order_while_they_fit_the_capacity(store):
    runner = FakeRunner(store.layout, capacity={"cpu": Decimal(2), "memory": Decimal(8 << 30)})
    engine = Engine(store, runner)
    big = apply(store, {"/in": ["type:dataset"]}, resources={"cpu": "1500m"})
    small = apply(store, {"/in": ["type:dataset"]}, resources={"cpu": "500m"}, image="small:v1")
    later = apply(store, {"/in": ["type:dataset"]}, resources={"cpu": "1"}, image="later:v1")
    push(store, "type:dataset")
    engine.run_until_idle()
    assert statuses(store, big) == ["running"] and statuses(store, small) == ["running"]
    assert statuses(store, later) == ["ready"]  # 1.5 + 0.5 cores are taken
    ((big_run, _),) = runs_of(store, big.plan_id)
    runner.finish(load_job(store, big_run), 0)
    engine.run_until_idle()
    assert statuses(store, later) == ["running"]


def test_a_run_bigger_than_the_machine_fails_instead_of_waiting_forever(store):
    engine = Engine(store, FakeRunner(store.layout, capacity={"cpu": Decimal(2), "memory": Decimal(1 << 30)}))
    plan = apply(store, {"/in": ["type:dataset"]}, resources={"nvidia.com/gpu": "1"})
    push(store, "type:dataset")
    engine.run_until_idle()
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.status == "failed" and run.exit_code == 255
    assert "nvidia.com/gpu=1 (capacity 0)" in run.message


def test_a_too_big_run_says_so_in_quantities_people_write(store):
    capacity = {"cpu": Decimal(2), "memory": Decimal(25275990016)}
    engine = Engine(store, FakeRunner(store.layout, capacity=capacity))
    plan = apply(store, {"/in": ["type:dataset"]}, resources={"memory": "1000Gi"})
    push(store, "type:dataset")
    engine.run_until_idle()
    (run,) = runs.find_runs(store, plan_ids=[plan.plan_id])
    assert run.exit_code is not None and run.message.endswith("memory=1000Gi (capacity 23.5Gi)")


def test_a_failing_stage_is_logged_and_the_others_go_on(store, caplog):
    class BrokenPrepare(FakeRunner):
        def prepare(self, job):
            raise OSError("disk on fire")

    engine = Engine(store, BrokenPrepare(store.layout))
    apply(store, {"/in": ["type:dataset"]})
    push(store, "type:dataset")
    with caplog.at_level(logging.ERROR, logger="knitfab.engine"):
        assert engine.tick()  # projection still did its work
    assert "disk on fire" in caplog.text and "Traceback" in caplog.text


def test_stages_take_runs_round_robin(store):
    engine = Engine(store, FakeRunner(store.layout), batch=2)
    plan = apply(store, {"/in": ["type:dataset"]}, active=False)
    for i in range(5):
        push(store, "type:dataset", f"n:{i}")
    engine.project()
    store.execute("UPDATE run SET status = 'waiting'")
    seen = [engine._pick("initialize", [runs.S.WAITING]) for _ in range(3)]
    ordered = [r for r, _ in runs_of(store, plan.plan_id)]
    assert seen == [ordered[0:2], ordered[2:4], [ordered[4], ordered[0]]]


def test_recover_fails_uploads_interrupted_by_a_restart(store):
    run_id, knit_id = data.begin_upload(store)
    Engine(store, FakeRunner(store.layout)).recover()
    run = runs.show_run(store, run_id)
    assert run.status == "failed" and run.outputs == []


def test_a_run_starts_within_milliseconds_of_its_data(store):
    engine = Engine(store, FakeRunner(store.layout), poll=30)  # a long poll: only wake() can be fast
    plan = apply(store, {"/in": ["type:dataset"]})
    stop = threading.Event()
    thread = threading.Thread(target=engine.run_forever, args=(stop,))
    thread.start()
    try:
        push(store, "type:dataset")
        engine.wake()
        wait_for(lambda: statuses(store, plan) == ["running"], timeout=2)
    finally:
        stop.set()
        engine.wake()
        thread.join(5)
    assert not thread.is_alive()


def test_recover_lets_the_runner_delete_workers_no_live_run_owns(store):
    class Reconciling(FakeRunner):
        def reconcile(self, live):
            self.live = set(live)
            return ["worker-run-stray"]

    runner = Reconciling(store.layout)
    engine = Engine(store, runner)
    plan = apply(store, {"/in": ["type:dataset"]})
    push(store, "type:dataset")
    engine.run_until_idle()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    engine.recover()
    assert runner.live == {run_id}


def commits_during(store, step):
    """How many transactions ``step()`` commits on the store's connection."""
    return sum(sql.strip().upper() == "COMMIT" for sql in statements_during(store, step))


def test_finish_writes_every_run_it_settles_in_one_transaction(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    for _ in range(5):
        push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start(), engine.watch()
    assert statuses(store, plan) == ["completing"] * 5
    assert commits_during(store, engine.finish) == 1
    assert statuses(store, plan) == ["done"] * 5


def sqlite_steps(store, query) -> int:
    """SQLite virtual-machine instructions ``query()`` runs (counted in hundreds): a cost that does
    not depend on the machine's speed."""
    steps = [0]
    conn = store.db.connection()
    conn.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 100)
    try:
        query()
    finally:
        conn.set_progress_handler(None, 100)
    return steps[0] * 100


def test_choosing_the_next_runs_to_start_does_not_walk_the_runs_that_have_ended(store):
    engine = Engine(store, FakeRunner(store.layout))
    apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["hang"])
    push(store, "type:dataset")
    engine.project()

    def take_turns():
        assert len(jobs.take_turns(store, [RunStatus.WAITING], "r.seq", 32)) == 1

    before = sqlite_steps(store, take_turns)
    (uploads,) = store.one("SELECT plan_id FROM plan WHERE name = 'knit#uploaded'")
    with store.write():  # 5,000 ended runs of the upload plan, as a long-lived server has
        store.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
            " INSERT INTO run (run_id, plan_id, status, updated_at) SELECT 'old-' || i, ?, 'done', 1 FROM n",
            uploads,
        )
    assert sqlite_steps(store, take_turns) < before + 1000


def test_watch_writes_its_runs_new_statuses_and_messages_in_one_transaction(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["hang"])
    for _ in range(5):
        push(store, "type:dataset")
    engine.project(), engine.initialize(), engine.start()
    assert commits_during(store, engine.watch) == 1
    assert statuses(store, plan) == ["running"] * 5


def statements_during(store, step) -> list[str]:
    """The statements ``step()`` runs on the store's connection (SQLite's own trace)."""
    seen: list[str] = []
    conn = store.db.connection()
    conn.set_trace_callback(seen.append)
    try:
        step()
    finally:
        conn.set_trace_callback(None)
    return seen


def test_a_tick_with_no_run_in_flight_asks_only_what_has_changed(store):
    engine = Engine(store, FakeRunner(store.layout))
    apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["succeed"])
    push(store, "type:dataset")
    engine.run_until_idle()
    data.change_tags(store, push(store, "type:other"), add=[Tag("note", "x")])  # an API write wakes it
    asked = statements_during(store, lambda: engine.tick())
    # which stages have runs, the projection's nominations and the garbage queue; no stage's own query
    assert len(asked) <= 4, asked
    assert not any("json_group_array" in sql or "ROW_NUMBER" in sql for sql in asked)


def test_a_run_made_in_a_tick_goes_through_the_later_stages_of_that_tick(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["hang"])
    push(store, "type:dataset")
    assert engine.tick() and statuses(store, plan) == ["running"]


def test_a_stage_loads_the_runs_it_takes_in_one_statement(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:model"]}, args=["hang"])
    for _ in range(5):
        push(store, "type:dataset")
    engine.project()
    for stage in (engine.initialize, engine.start, engine.watch):
        loads = [sql for sql in statements_during(store, stage) if "json_group_array" in sql]
        assert len(loads) == 1, stage.__name__
    assert statuses(store, plan) == ["running"] * 5
