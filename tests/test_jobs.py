"""A run as the runner sees it (``jobs.load_job``): everything of it, in one statement, since
the engine loads a run at each of its stages; and the queues the engine takes in turns."""

from helpers import apply, push, runs_of

from knitfab.engine import Engine
from knitfab.runners.protocol import Mount
from knitfab.store.jobs import garbage, load_job


def test_a_run_is_loaded_whole_in_one_statement(store):
    plan = apply(
        store, {"/in/b": ["type:b"], "/in/a": ["type:a"]}, {"/out/z": ["type:z"], "/out/m": ["type:m"]},
        log={"tags": ["type:log"]}, resources={"cpu": "500m", "memory": "1Gi"},
        on_node={"must": ["zone=b", "zone=a"], "prefer": ["gpu=yes"]}, entrypoint=["python", "main.py"], args=["-v"],
    )  # fmt: skip
    a, b = push(store, "type:a"), push(store, "type:b")
    Engine(store, None).project()
    ((run_id, _),) = runs_of(store, plan.plan_id)
    statements = []
    store.db.connection().set_trace_callback(statements.append)
    try:
        job = load_job(store, run_id)
    finally:
        store.db.connection().set_trace_callback(None)
    assert len(statements) == 1
    assert (job.plan_id, job.image, job.entrypoint, job.args) == (plan.plan_id, "example.com/train:v1",
                                                                 ["python", "main.py"], ["-v"])  # fmt: skip
    assert job.inputs == [Mount("/in/a", a), Mount("/in/b", b)]  # in the order of their paths
    assert [m.path for m in job.outputs] == ["/out/m", "/out/z"] and job.log is not None
    assert job.log not in {m.knit_id for m in job.outputs}
    assert job.resources == {"cpu": "500m", "memory": "1Gi"}
    assert job.on_node == [("must", "zone", "a"), ("must", "zone", "b"), ("prefer", "gpu", "yes")]
    assert job.worker is None and job.service_account is None


def test_the_garbage_queue_is_taken_in_turns_from_the_cursor_round_to_the_start(store):
    with store.write():
        for n in range(5):
            store.execute("INSERT INTO garbage (knit_id) VALUES (?)", f"k{n}")
    first = garbage(store, 0, 2)
    assert [k for _, k in first] == ["k0", "k1"]
    cursor = first[-1][0]
    assert [k for _, k in garbage(store, cursor, 2)] == ["k2", "k3"]  # the batch is full: no wrap
    last = garbage(store, garbage(store, cursor, 2)[-1][0], 3)
    assert [k for _, k in last] == ["k4", "k0", "k1"]  # after the cursor, then round to the start
    assert [k for _, k in garbage(store, last[0][0], 10)] == ["k0", "k1", "k2", "k3", "k4"]  # each once
