"""What `shared/mongo.index_plan` promises beyond the design map's names."""

from __future__ import annotations

from syncjobs.shared.models import ACTIVE_STATUSES, RunStatus
from syncjobs.shared.mongo import index_plan


def test_the_active_status_range_holds_the_active_statuses_and_only_the_reset_note_beside() -> None:
    """`active_status` is partial on a range of statuses (SecantusDB plans no partial `$in`): a status added
    between `pending` and `running` (in byte order, as the server compares strings) would ride along."""
    [runs] = [plan for plan in index_plan() if plan.collection == "job_runs"]
    [active] = [index.document for index in runs.indexes if index.document["name"] == "active_status"]
    bounds = active["partialFilterExpression"]["status"]
    inside = {status for status in RunStatus if bounds["$gte"].encode() <= status.encode() <= bounds["$lte"].encode()}
    assert inside == ACTIVE_STATUSES | {RunStatus.RESET}


def test_no_retired_index_is_planned() -> None:
    for plan in index_plan():
        assert not {str(index.document["name"]) for index in plan.indexes} & set(plan.retired), plan.collection
