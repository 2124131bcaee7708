"""MLflow as a peer of ``GET /api/data/?tag=...``: ``search_runs`` by tags in its SQLite store.

Run by ``bench/api_bench.py --mlflow PYTHON`` with an interpreter that has MLflow (``pip install
mlflow`` in a venv of its own: it is not a dependency of this project); by hand:

    PYTHON bench/mlflow_peer.py --data 100000 --cache .cache/bench --query 1000 type:dataset shard:s107

The store holds ``--data`` finished runs of one experiment, each with the five tags
bench/engine_bench.py gives a Data (so the same tags have the same hits). It is built once and
kept in ``CACHE/mlflow-store-N/mlflow.db``: MLflow makes the schema and one run through its own
store API, whose row is then copied, with new ids, in bulk (MLflow's own ``create_run`` takes
milliseconds a run). Each query is ``MlflowClient.search_runs`` of both tags (``tags.k = 'v'
AND ...``), ``max_results`` = its hits, timed warm, median of ``--repeat``; it prints one JSON
line per query: ``{"hits": ..., "ms": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtags import data_tags  # noqa: E402


def build(db: Path, n: int) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "artifacts"))
    experiment = store.create_experiment("bench")
    model = store.create_run(experiment, "bench", int(time.time() * 1000), [], "model")
    store.engine.dispose()
    conn = sqlite3.connect(db)
    columns = [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
    row = conn.execute("SELECT * FROM runs WHERE run_uuid = ?", (model.info.run_id,)).fetchone()
    template = dict(zip(columns, row, strict=True))
    conn.execute("DELETE FROM tags")
    conn.execute("DELETE FROM runs")
    insert_run = f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    for start in range(0, n, 10_000):
        runs, tags = [], []
        for i in range(start, min(n, start + 10_000)):
            run_id = uuid.uuid4().hex
            row = {**template, "run_uuid": run_id, "name": f"run{i}", "status": "FINISHED"}
            runs.append([row[c] for c in columns])
            tags += [(*t.split(":", 1), run_id) for t in data_tags(i)]
        conn.executemany(insert_run, runs)
        conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        conn.commit()
    conn.close()


def search_ms(client, experiment: str, hits: int, tags: list[str], repeat: int) -> float:
    query = " AND ".join(f"tags.{k} = '{v}'" for k, v in (t.split(":", 1) for t in tags))
    found = client.search_runs([experiment], query, max_results=hits)
    assert len(found) == hits, (len(found), hits)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.search_runs([experiment], query, max_results=hits)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=int, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--query", nargs="+", action="append", default=[], metavar="HITS TAG", help="hits, then tags")
    args = parser.parse_args()
    db = args.cache / f"mlflow-store-{args.data}" / "mlflow.db"
    if not db.exists():
        t0 = time.perf_counter()
        build(db.with_suffix(".tmp"), args.data)
        db.with_suffix(".tmp").rename(db)
        print(json.dumps({"built": args.data, "seconds": round(time.perf_counter() - t0)}), flush=True)
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("bench").experiment_id
    for hits, *tags in args.query:
        ms = search_ms(client, experiment, int(hits), tags, args.repeat)
        print(json.dumps({"hits": int(hits), "ms": round(ms, 1), "mlflow": mlflow.__version__}), flush=True)


if __name__ == "__main__":
    main()
