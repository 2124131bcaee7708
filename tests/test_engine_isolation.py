"""A run the engine cannot carry on fails with the error; every other run goes on (issue 9.7)."""

import errno
import threading

import pytest
from fake_runner import FakeRunner
from helpers import apply, drive, push, runs_of, wait_for

from knitfab.engine import Engine
from knitfab.errors import InvalidTransition
from knitfab.runners.local import LocalRunner
from knitfab.status import RunStatus
from knitfab.store import runs

STAGE_OF = {"prepare": "initialize", "start": "start", "status": "watch", "stop": "finish", "cleanup": "finish"}


def poisoned(method: str, error: Exception):
    """A fake runner whose ``method`` raises ``error`` for the runs of image ``poison:v1``."""

    class Poisoned(FakeRunner):
        pass

    real = getattr(FakeRunner, method)

    def broken(self, job, *args):
        if job.image == "poison:v1":
            raise error
        return real(self, job, *args)

    setattr(Poisoned, method, broken)
    return Poisoned


def two_plans(store):
    poison = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:x"]}, image="poison:v1", args=["succeed"])
    good = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:y"]}, image="good:v1", args=["succeed"])
    for i in range(3):
        push(store, "type:dataset", f"n:{i}")
    return poison, good


def only_run_of(store, plan):
    return runs.find_runs(store, plan_ids=[plan.plan_id])


@pytest.mark.parametrize("method", sorted(STAGE_OF))
def test_a_run_whose_runner_call_raises_fails_with_the_error_and_the_others_complete(store, method):
    runner = poisoned(method, ValueError("embedded null byte"))(store.layout)
    engine = Engine(store, runner)
    poison, good = two_plans(store)
    engine.run_until_idle()
    assert [r.status for r in only_run_of(store, good)] == ["done"] * 3
    for run in only_run_of(store, poison):
        assert run.status == "failed"
        assert run.exit_code == 255
        assert run.message == f"knitfab could not {STAGE_OF[method]} the run: ValueError: embedded null byte"


def test_a_passing_error_of_the_environment_is_tried_again(store):
    class FullOnce(FakeRunner):
        calls = 0

        def prepare(self, job):
            FullOnce.calls += 1
            if FullOnce.calls == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            super().prepare(job)

    engine = Engine(store, FullOnce(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, args=["succeed"])
    push(store, "type:dataset")
    engine.run_until_idle()
    assert FullOnce.calls == 2 and [s for _, s in runs_of(store, plan.plan_id)] == ["done"]


def test_an_error_of_the_environment_that_lasts_fails_the_run_after_the_patience(store):
    engine = Engine(store, poisoned("prepare", OSError(errno.ENOSPC, "No space left on device"))(store.layout))
    engine.patience = 0
    poison, good = two_plans(store)
    engine.run_until_idle()
    assert {r.status for r in only_run_of(store, good)} == {"done"}
    (message,) = {r.message for r in only_run_of(store, poison)}
    assert message == "knitfab could not initialize the run: OSError: [Errno 28] No space left on device"


def test_a_plan_whose_projection_raises_does_not_stop_the_others(store, caplog):
    engine = Engine(store, FakeRunner(store.layout))
    poison, good = two_plans(store)
    (input_id,) = store.column("SELECT id FROM input WHERE plan_id = ?", poison.plan_id)
    store.execute("PRAGMA foreign_keys = OFF")  # a nomination of a Data that does not exist
    store.execute("INSERT INTO nomination (input_id, knit_id, updated) VALUES (?, 'no-such-data', 1)", input_id)
    store.execute("PRAGMA foreign_keys = ON")
    engine.run_until_idle()
    assert [r.status for r in only_run_of(store, good)] == ["done"] * 3
    assert "projection of plan" in caplog.text and "FOREIGN KEY constraint failed" in caplog.text


def test_the_engine_thread_outlives_a_poison_plan(store):
    engine = Engine(store, poisoned("start", ValueError("embedded null byte"))(store.layout), poll=0.01)
    poison, good = two_plans(store)
    stop = threading.Event()
    thread = threading.Thread(target=engine.run_forever, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: {r.status for r in only_run_of(store, good)} == {"done"}, timeout=10)
        wait_for(lambda: {r.status for r in only_run_of(store, poison)} == {"failed"}, timeout=10)
        assert thread.is_alive()
    finally:
        stop.set()
        engine.wake()
        thread.join(5)


@pytest.mark.slow
def test_a_plan_path_with_nul_fails_its_run_in_the_real_sandbox_and_the_others_run(store):
    """The plan as it was accepted before paths were validated, inserted through the store."""
    engine = Engine(store, LocalRunner(store.layout))
    py = ["python", "-c", "open('/out/ok', 'w').write('fine')"]
    poison = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:x"]}, image="poison:v1", entrypoint=py, args=[])
    good = apply(store, {"/in": ["type:dataset"]}, {"/out": ["type:y"]}, image="good:v1", entrypoint=py, args=[])
    store.execute("UPDATE input SET path = '/in/bad' || char(0) WHERE plan_id = ?", poison.plan_id)
    push(store, "type:dataset")
    drive(
        engine,
        lambda: {r.status for r in only_run_of(store, good) + only_run_of(store, poison)} == {"done", "failed"},
    )
    (bad,) = only_run_of(store, poison)
    assert bad.status == "failed" and "ValueError: embedded null byte" in bad.message
    (ok,) = only_run_of(store, good)
    assert ok.status == "done" and (store.layout.data(ok.outputs[0].knit_id) / "ok").read_text() == "fine"


def test_only_the_engine_may_fail_a_completing_run_and_a_user_still_cannot_abort_it(store):
    engine = Engine(store, FakeRunner(store.layout))
    plan = apply(store, {"/in": ["type:dataset"]}, args=["hang"])
    push(store, "type:dataset")
    engine.run_until_idle()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    runs.tearoff(store, run_id)
    with pytest.raises(InvalidTransition):
        runs.abort(store, run_id)  # Knitfab's table: completing only goes to done
    with store.write():
        assert runs.fail(store, run_id, "x" * 5000) == RunStatus.ABORTING
    run = runs.show_run(store, run_id)
    assert run.status == "aborting" and (run.exit_code, run.message) == (255, "x" * runs.MAX_MESSAGE)
    with store.write():
        assert runs.fail(store, run_id, "finishing failed too") == RunStatus.FAILED
    run = runs.show_run(store, run_id)
    assert run.status == "failed" and (run.exit_code, run.message) == (255, "finishing failed too")
    with store.write():
        assert runs.fail(store, run_id, "again") is None  # a finished run stays as it is
