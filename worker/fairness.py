"""Which runs a claimer claims next: round-robin across workspaces, under the per-workspace cap and the
fair share. No I/O.

A claimer takes one run per workspace per turn, so one tenant's thousand due runs wait behind another
tenant's single run for one claim at most, not for the thousand. A workspace holds at most its share of
this replica's slots (`SYNCJOBS_WORKSPACE_SHARE`, half by default) while another workspace has runs
waiting, and beyond its share it borrows a free slot only while `RESERVE_SLOTS` stay free for others
(where more than one workspace exists): four slow runs of one tenant that came first cannot hold every
slot, so another tenant's later run starts at its next claim, with no running sync stopped for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from bson import ObjectId
from syncjobs.worker.pending_runs import PendingRun

# Slots a workspace past its share leaves free for the others, on an install with more than one workspace.
RESERVE_SLOTS = 1


def under_cap(running: int, cap: int | None) -> bool:
    """`cap` None is unlimited."""
    return cap is None or running < cap


def claim_order(
    workspaces: Sequence[ObjectId], running: Mapping[ObjectId, int], cap: int | None, after: ObjectId | None
) -> list[ObjectId]:
    """The workspaces to claim from this turn, starting after the one served last (a rotation, so every
    workspace comes first in turn), leaving out those at their cluster-wide cap."""
    ordered = sorted(workspaces)
    if after is not None:
        start = next((i for i, workspace in enumerate(ordered) if workspace > after), 0)
        ordered = ordered[start:] + ordered[:start]
    return [workspace for workspace in ordered if under_cap(running.get(workspace, 0), cap)]


def pick_claims(
    due: Mapping[ObjectId, Sequence[PendingRun]],
    running: Mapping[ObjectId, int],
    cap: int | None,
    after: ObjectId | None,
    count: int,
    *,
    here: Mapping[ObjectId, int] | None = None,
    share: int | None = None,
    reserve: int = 0,
) -> list[PendingRun]:
    """Up to `count` (the free slots) runs to claim at once: one per workspace per turn (round-robin from
    the workspace after `after`), each workspace's oldest first, at most one run per job, none beyond a
    workspace's cap (`running` counts its runs already going). A workspace holding `share` of this
    replica's slots (`here` counts its runs on this replica) gives its turn to any workspace below its share
    with a run to claim, and takes another slot only while `reserve` slots stay free after it: a workspace
    whose run arrives later finds a slot at its next claim, without stopping anyone's run."""
    order = claim_order(list(due), running, cap, after)
    queues = {workspace: deque(due[workspace]) for workspace in order}
    counts = dict(running)
    local = dict(here or {})
    picked: list[PendingRun] = []
    jobs: set[ObjectId] = set()

    def claimable(workspace: ObjectId) -> bool:
        queue = queues[workspace]
        while queue and queue[0].job_id in jobs:
            queue.popleft()
        return bool(queue) and under_cap(counts.get(workspace, 0), cap)

    def past_share(workspace: ObjectId) -> bool:
        return share is not None and local.get(workspace, 0) >= share

    while order and len(picked) < count:
        for workspace in list(order):
            if not claimable(workspace):
                order.remove(workspace)
                continue
            if past_share(workspace):
                if any(not past_share(other) and claimable(other) for other in order if other != workspace):
                    continue  # its turn goes to those below their share while they have runs to claim
                if count - len(picked) - 1 < reserve:
                    order.remove(workspace)  # borrowing would take the reserve: free slots only shrink
                    continue
            run = queues[workspace].popleft()
            picked.append(run)
            jobs.add(run.job_id)
            counts[workspace] = counts.get(workspace, 0) + 1
            local[workspace] = local.get(workspace, 0) + 1
            if len(picked) == count:
                break
    return picked


def share_slots(max_concurrent_runs: int, fraction: float) -> int | None:
    """How many of a replica's slots one workspace may hold while others wait (None: no limit)."""
    if fraction >= 1:
        return None
    return max(1, int(max_concurrent_runs * fraction))
