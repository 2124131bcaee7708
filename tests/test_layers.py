"""The layers' rules, read from the sources (docs/architecture.md): SQL only in ``knitfab/store/``,
the API never reaches the engine, no import cycle, one checked function writes ``run.status``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("knitfab", "knit")
SQL = re.compile(
    r"\b(SELECT\s[\s\S]*\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|TRIGGER|VIEW)|DROP\s+(TABLE|INDEX)|ALTER\s+TABLE)\b"
)


def sources() -> dict[str, Path]:
    """Every module of the two packages by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = sources()


def imports(name: str, path: Path) -> set[str]:
    """The modules of ours that ``name`` imports, at any depth of its code (lazy imports too:
    a cycle hidden in a function is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    docstrings |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "?" for v in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
    return found


def test_sql_is_written_only_in_the_store_package():
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for name, path in MODULES.items()
        if not name.startswith("knitfab.store")
        for line, text in string_literals(path)
        if SQL.search(text)
    ]
    assert outside == []


def test_the_sql_guard_sees_the_queries_of_the_store():
    # The guard above is only worth something if it recognises the store's own queries.
    queries = [text for path in (ROOT / "knitfab/store").glob("*.py") for _, text in string_literals(path)]
    assert sum(bool(SQL.search(text)) for text in queries) > 100


def test_the_api_never_imports_the_engine_nor_the_runners_behind_it():
    reach = {
        name: sorted(m for m in GRAPH[name] if m.startswith(("knitfab.engine", "knitfab.server"))) for name in MODULES
    }
    assert {name: bad for name, bad in reach.items() if name.startswith("knitfab.api") and bad} == {}


def test_nothing_imports_the_factories():
    factories = {"knitfab.api.app", "knitfab.server", "knit.cli", "knitfab.__main__"}
    users = {f: sorted(n for n, deps in GRAPH.items() if f in deps) for f in factories}
    # The server assembles the process from the API's factory; the CLI's entry points start them.
    allowed = {
        "knitfab.api.app": ["knitfab.server"],
        "knitfab.server": ["knitfab.__main__"],
        "knit.cli": ["knit.__main__"],
    }
    assert {f: u for f, u in users.items() if u != allowed.get(f, [])} == {}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(start: str) -> None:
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(n for n in MODULES if n.startswith("knitfab.store")))
def test_the_store_imports_no_engine_runner_or_api(module):
    above = ("knitfab.engine", "knitfab.api", "knitfab.server", "knitfab.console", "knitfab.runners.local")
    assert sorted(m for m in GRAPH[module] if m.startswith(above)) == []


# Keys only Knitfab's JSON has (spec §2): the store answers records, and one module spells them.
JSON_KEYS = {"knitId", "runId", "planId", "updatedAt", "upstreams", "downstreams", "nomination"}
RENDERERS = {"knitfab.api.render", "knitfab.api.openapi"}  # the JSON, and the schema describing it


def test_knitfab_json_is_spelled_only_by_the_renderer():
    spelled = {
        name: sorted({text for _, text in string_literals(path) if text in JSON_KEYS})
        for name, path in MODULES.items()
        if name.startswith("knitfab")
    }
    assert {name: keys for name, keys in spelled.items() if keys and name not in RENDERERS} == {}
    assert spelled["knitfab.api.render"] == sorted(JSON_KEYS)


def test_the_store_answers_records_not_dicts():
    public = [
        f"{name}.{node.name}"
        for name, path in MODULES.items()
        if name in ("knitfab.store.data", "knitfab.store.runs", "knitfab.store.plans", "knitfab.store.imports")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("_")
        and node.returns is not None
        and re.search(r"\bdict\b(?!\[)", ast.unparse(node.returns))
    ]
    assert public == []


STATUS_WRITE = re.compile(r"\bUPDATE\s+run\s+SET\b[^;]*\bstatus\s*=", re.IGNORECASE)


def test_run_status_is_written_by_one_checked_function():
    writers = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in MODULES.values()
        for line, text in string_literals(path)
        if STATUS_WRITE.search(text)
    ]
    assert len(writers) == 1, writers
    assert writers[0].startswith("knitfab/store/transitions.py")


# The knit modules the server may import (knit/__init__'s docstring): standard library only.
SHARED = {
    "knit", "knit.tagtext", "knit.plandefaults", "knit.timefmt", "knit.archive", "knit.extract", "knit.graphs",
    "knit.unpack", "knit.blocks", "knit.digests",
}  # fmt: skip


def test_the_server_imports_only_the_shared_knit_modules():
    used = {
        name: sorted(m for m in GRAPH[name] if m.startswith("knit") and not m.startswith("knitfab")) for name in MODULES
    }
    assert {n: bad for n, ms in used.items() if n.startswith("knitfab") and (bad := sorted(set(ms) - SHARED))} == {}


@pytest.mark.parametrize("module", sorted(SHARED - {"knit"}))
def test_a_shared_knit_module_needs_only_the_standard_library(module):
    tree = ast.parse(MODULES[module].read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level
    }
    assert roots - set(__import__("sys").stdlib_module_names) - {"__future__"} == set()
