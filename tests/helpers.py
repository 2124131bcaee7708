"""Small helpers that drive the real store the way the API does."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from knitfab.planspec import parse_plan_spec
from knitfab.store import data, plans
from knitfab.store.db import Store
from knitfab.store.records import PlanDetail
from knitfab.tags import Tag, parse_tag


def tags(*texts: str) -> list[Tag]:
    return [parse_tag(t) for t in texts]


def push(store: Store, *tag_texts: str, files: dict[str, str] | None = None) -> str:
    """Upload a Data (as POST /api/data does) and tag it (as the CLI's follow-up PUT does)."""
    run_id, knit_id = data.begin_upload(store)
    staging = store.layout.staging(knit_id)
    staging.mkdir(parents=True)
    for name, text in (files or {}).items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
    store.layout.publish(knit_id)
    data.end_upload(store, run_id, ok=True)
    if tag_texts:
        data.change_tags(store, knit_id, add=tags(*tag_texts))
    return knit_id


def plan_doc(inputs: dict[str, list[str]], outputs: dict[str, list[str]] | None = None, **extra) -> dict:
    doc = {
        "image": extra.pop("image", "example.com/train:v1"),
        "entrypoint": extra.pop("entrypoint", ["fake"]),
        "args": extra.pop("args", ["hang"]),
        "inputs": [{"path": p, "tags": t} for p, t in inputs.items()],
        "outputs": [{"path": p, "tags": t} for p, t in (outputs or {}).items()],
    }
    doc.update(extra)
    return doc


def apply(
    store: Store, inputs: dict[str, list[str]], outputs: dict[str, list[str]] | None = None, **extra
) -> PlanDetail:
    return plans.apply_plan(store, parse_plan_spec(plan_doc(inputs, outputs, **extra)))


def runs_of(store: Store, plan_id: str) -> list[tuple]:
    return store.all("SELECT run_id, status FROM run WHERE plan_id = ? ORDER BY seq", plan_id)


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02):
    """Poll until ``predicate()`` is truthy; its last value, or an AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"timed out after {timeout}s waiting for {predicate}"
            return value
        time.sleep(interval)


def read_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def drive(engine, predicate, timeout: float = 20.0):
    """Tick ``engine`` until ``predicate()`` holds (for runs that take real time)."""
    return wait_for(lambda: (engine.tick(), predicate())[1], timeout)


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate (and its key) for 127.0.0.1 and localhost, made by ``openssl``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
