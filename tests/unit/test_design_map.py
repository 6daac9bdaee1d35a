"""docs/DESIGN.md's collections table is the map of the database: every collection and index it names is
one `shared/mongo.index_plan` creates, and every one the plan creates is on the map."""

from __future__ import annotations

import re
from pathlib import Path

from syncjobs.shared.mongo import index_plan

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "DESIGN.md"


def _design_collections() -> dict[str, set[str]]:
    """Collection -> the index names its row names (backticked in the last column)."""
    text = DESIGN.read_text()
    table = text[text.index("## Collections") :].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    mapped: dict[str, set[str]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        collection = cells[0].strip("`")
        mapped[collection] = set(re.findall(r"`([a-z_]+)`", cells[-1]))
    return mapped


def test_every_collection_and_index_of_the_design_is_in_the_index_plan_and_back() -> None:
    planned = {plan.collection: {str(index.document["name"]) for index in plan.indexes} for plan in index_plan()}
    assert _design_collections() == planned


def test_the_design_map_names_the_collections_the_store_uses() -> None:
    assert {"syncjobs", "job_runs", "worker_locks", "sync_state", "alert_states"} <= set(_design_collections())
