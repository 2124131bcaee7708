"""The five tags bench/engine_bench.py gives its i-th Data, which bench/mlflow_peer.py gives its
i-th MLflow run (a module of its own: the peer runs in MLflow's interpreter, without knitfab)."""


def data_tags(i: int) -> list[str]:
    mode = ("train", "test")[i // 100 % 2]
    return ["type:dataset", f"project:p{i % 100}", f"batch:b{i % 1000}", f"shard:s{i % 10000}", f"mode:{mode}"]
