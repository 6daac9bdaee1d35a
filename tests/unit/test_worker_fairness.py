"""Claims across workspaces: round-robin from the workspace after the last served, under the cap; and
which waiting fires a job's overlap policy skips."""

from __future__ import annotations

from bson import ObjectId
from syncjobs.worker.fairness import RoundRobin, claim_order, under_cap
from syncjobs.worker.fire_plan import runs_to_skip

A, B, C = sorted(ObjectId() for _ in range(3))


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


def test_one_tenants_thousand_runs_wait_behind_anothers_single_run_for_one_claim_at_most() -> None:
    work = {A: 1000, B: 1}
    turns = RoundRobin(claim_order([A, B], {}, None, after=None), {}, None)
    claimed = []
    while turns and len(claimed) < 4:
        workspace = turns.next()
        if work[workspace] == 0:
            turns.exhausted(workspace)
            continue
        work[workspace] -= 1
        turns.claimed(workspace)
        claimed.append(workspace)
    assert claimed == [A, B, A, A]


def test_the_cap_counts_runs_claimed_during_the_round() -> None:
    turns = RoundRobin([A, B], {A: 1}, 2)
    assert turns.next() == A
    turns.claimed(A)  # A now runs 2: its cap
    assert [turns.next(), turns.next()] == [B, B]


def test_overlap_skip_skips_every_waiting_fire_but_never_a_manual_or_retry_run() -> None:
    waiting = [(1, "schedule"), (2, "manual"), (3, "schedule"), (4, "retry")]
    assert runs_to_skip("skip", waiting) == [1, 3]


def test_overlap_queue_keeps_the_oldest_waiting_run_and_skips_later_fires() -> None:
    assert runs_to_skip("queue", [(1, "schedule"), (2, "schedule"), (3, "manual")]) == [2]
    assert runs_to_skip("queue", [(1, "manual"), (2, "schedule")]) == [2]
    assert runs_to_skip("queue", [(1, "schedule")]) == []


def test_overlap_allow_skips_nothing() -> None:
    assert runs_to_skip("allow", [(1, "schedule"), (2, "schedule")]) == []
