"""Claims across workspaces: round-robin from the workspace after the last served, under the cap, one run
per job; which waiting fires a job's overlap policy skips; the pending runs a claimer knows of."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from syncjobs.worker.fairness import claim_order, pick_claims, share_slots, under_cap
from syncjobs.worker.fire_plan import runs_to_skip
from syncjobs.worker.pending_runs import PendingRun, PendingRuns

A, B, C = sorted(ObjectId() for _ in range(3))
T = datetime(2030, 1, 1, tzinfo=UTC)


def test_without_a_cap_every_workspace_with_work_is_served_in_id_order() -> None:
    assert claim_order([C, A, B], {}, None, after=None) == [A, B, C]


def test_the_turn_starts_after_the_workspace_served_last() -> None:
    assert claim_order([A, B, C], {}, None, after=A) == [B, C, A]
    assert claim_order([A, B, C], {}, None, after=C) == [A, B, C]
    assert claim_order([A, C], {}, None, after=B) == [C, A]  # the last served may have no work left


def test_a_workspace_at_its_cap_is_left_out() -> None:
    assert claim_order([A, B, C], {A: 2, B: 1}, 2, after=None) == [B, C]
    assert under_cap(0, None) and under_cap(10_000, None)
    assert not under_cap(0, 0)


def _due(workspace: ObjectId, count: int, *, job: ObjectId | None = None) -> list[PendingRun]:
    return [PendingRun(T, ObjectId(), workspace, job or ObjectId()) for _ in range(count)]


def test_one_tenants_thousand_runs_wait_behind_anothers_single_run_for_one_claim_at_most() -> None:
    due = {A: _due(A, 1000), B: _due(B, 1)}
    picked = pick_claims(due, {}, None, after=None, count=4)
    assert [run.workspace_id for run in picked] == [A, B, A, A]
    assert [run.workspace_id for run in pick_claims(due, {}, None, after=A, count=2)] == [B, A]


def test_each_workspace_gives_its_oldest_runs_first() -> None:
    due = {A: _due(A, 3)}
    assert pick_claims(due, {}, None, after=None, count=2) == due[A][:2]


def test_the_cap_counts_running_runs_and_runs_picked_in_the_round() -> None:
    due = {A: _due(A, 5), B: _due(B, 5)}
    picked = pick_claims(due, {A: 1}, 2, after=None, count=10)
    assert Counter(run.workspace_id for run in picked) == Counter({A: 1, B: 2})


def test_one_run_per_job_at_a_time() -> None:
    job = ObjectId()
    due = {A: _due(A, 3, job=job) + _due(A, 1)}
    picked = pick_claims(due, {}, None, after=None, count=4)
    assert [run.job_id for run in picked] == [job, due[A][3].job_id]


def test_overlap_skip_skips_every_waiting_fire_but_never_a_manual_or_retry_run() -> None:
    waiting = [(1, "schedule"), (2, "manual"), (3, "schedule"), (4, "retry")]
    assert runs_to_skip("skip", waiting) == [1, 3]


def test_overlap_queue_keeps_the_oldest_waiting_run_and_skips_later_fires() -> None:
    assert runs_to_skip("queue", [(1, "schedule"), (2, "schedule"), (3, "manual")]) == [2]
    assert runs_to_skip("queue", [(1, "manual"), (2, "schedule")]) == [2]
    assert runs_to_skip("queue", [(1, "schedule")]) == []


def test_overlap_allow_skips_nothing() -> None:
    assert runs_to_skip("allow", [(1, "schedule"), (2, "schedule")]) == []


def test_pending_runs_are_due_by_workspace_oldest_first_without_waiting_jobs() -> None:
    pending = PendingRuns()
    later = PendingRun(T, ObjectId(), A, ObjectId())
    earlier = PendingRun(T - timedelta(seconds=1), ObjectId(), A, ObjectId())
    retry = PendingRun(T, ObjectId(), B, ObjectId(), due_at=T + timedelta(seconds=30))
    waiting = PendingRun(T, ObjectId(), C, ObjectId())
    for run in (later, earlier, retry, waiting):
        pending.add(run)
    assert pending.due_by_workspace(T, {waiting.job_id}) == {A: [earlier, later]}
    assert pending.due_by_workspace(T + timedelta(seconds=30), set())[B] == [retry]
    assert pending.next_due_after(T) == T + timedelta(seconds=30)
    pending.discard(retry.run_id)
    assert pending.next_due_after(T) is None
    pending.replace([waiting])
    assert len(pending) == 1


def test_a_workspace_at_its_share_of_the_slots_yields_to_another_that_waits() -> None:
    """Issue 21, finding 8: four slow runs of one tenant held every slot while another tenant's run waited."""
    busy, quiet = ObjectId(), ObjectId()
    due = {busy: _due(busy, 10), quiet: _due(quiet, 3)}
    picked = pick_claims(due, {}, None, None, 2, here={busy: 2}, share=2)
    assert [run.workspace_id for run in picked] == [quiet, quiet]
    due[quiet] = due[quiet][:1]  # once the other's runs are claimed, nothing waits: the slot is not left idle
    picked = pick_claims(due, {}, None, None, 2, here={busy: 2}, share=2)
    assert [run.workspace_id for run in picked] == [quiet, busy]
    alone = pick_claims({busy: _due(busy, 10)}, {}, None, None, 2, here={busy: 2}, share=2)
    assert len(alone) == 2  # no one else waits: the share does not hold it back
    fresh = pick_claims({busy: _due(busy, 10), quiet: _due(quiet, 3)}, {}, None, None, 4, here={}, share=2)
    assert Counter(run.workspace_id for run in fresh) == {busy: 2, quiet: 2}


def test_a_workspace_past_its_share_leaves_the_reserve_free_for_a_later_tenant() -> None:
    """Issue 21, finding 8, as it happened: the slow runs came first, the other tenant's run later."""
    busy, late = ObjectId(), ObjectId()
    first = pick_claims({busy: _due(busy, 4)}, {}, None, None, 4, share=2, reserve=1)
    assert len(first) == 3  # its share and one borrowed slot: one stays free
    later = pick_claims(
        {busy: _due(busy, 1), late: _due(late, 1)}, {}, None, None, 1, here={busy: 3}, share=2, reserve=1
    )
    assert [run.workspace_id for run in later] == [late]  # the later tenant starts at its next claim
    full = pick_claims({busy: _due(busy, 1)}, {}, None, None, 1, here={busy: 3}, share=2, reserve=1)
    assert full == []  # the reserve is not borrowed even with no one waiting: a later run finds it free
    assert len(pick_claims({busy: _due(busy, 4)}, {}, None, None, 4, share=2, reserve=0)) == 4  # one workspace
    assert len(pick_claims({busy: _due(busy, 4)}, {}, None, None, 4, share=None, reserve=1)) == 4  # share 1


def test_workspaces_all_at_their_share_take_turns_borrowing() -> None:
    """Two workspaces at their share and one slot free: one borrows it (this once looped forever)."""
    first, second = sorted(ObjectId() for _ in range(2))
    due = {first: _due(first, 3), second: _due(second, 3)}
    picked = pick_claims(due, {}, None, after=first, count=1, here={first: 2, second: 2}, share=2)
    assert [run.workspace_id for run in picked] == [second]
    assert pick_claims(due, {}, None, after=first, count=1, here={first: 2, second: 2}, share=2, reserve=1) == []
    below = pick_claims(due, {}, None, after=None, count=2, here={first: 2, second: 1}, share=2, reserve=1)
    assert [run.workspace_id for run in below] == [second]  # up to its share; no one borrows the last slot


def test_the_share_is_a_fraction_of_the_slots_and_one_at_least() -> None:
    assert share_slots(4, 0.5) == 2 and share_slots(1, 0.5) == 1 and share_slots(8, 1.0) is None
