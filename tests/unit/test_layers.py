"""The layers stay layers: `shared` is the bottom one, and every Mongo collection is reached from `shared/store`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = {
    "alert_states",
    "api_tokens",
    "data_sources",
    "destinations",
    "job_runs",
    "sync_state",
    "syncjobs",
    "webhook_deliveries",
    "webhooks",
    "worker_locks",
    "workspaces",
}
UPPER_LAYERS = ("syncjobs.api", "syncjobs.worker", "syncjobs.executor", "syncjobs.cli", "syncjobs.up")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_shared_imports_nothing_above_it() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(name for name in _imports(path) if name.startswith(UPPER_LAYERS))
        for path in sorted((ROOT / "shared").rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_collections_are_reached_only_from_shared_store() -> None:
    """`db.<collection>` or `db["<collection>"]` above `shared` would be a second home for that access."""
    offenders = []
    for folder in ("api", "worker", "executor", "syncjobs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (name := _collection_named(node)) in COLLECTIONS:
                    offenders.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')} {name}")
    assert offenders == []


def _collection_named(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and _is_database(node.value):
        return node.attr
    if isinstance(node, ast.Subscript) and _is_database(node.value) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return None


def _is_database(node: ast.expr) -> bool:
    # `db.x`, `self.db.x`, `db(request).x`: the names this code base gives a Database
    if isinstance(node, ast.Name):
        return node.id == "db"
    if isinstance(node, ast.Attribute):
        return node.attr in ("db", "_db")
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "db"
    return False


def test_the_product_imports_no_benchmark_dependency() -> None:
    """APScheduler is the `bench` extra's, for bench/peer_burst.py: an install without it must run."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("api", "worker", "executor", "shared", "syncjobs")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if any(name.split(".")[0] == "apscheduler" for name in _imports(path))
    ]
    assert offenders == []
