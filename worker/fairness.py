"""Which runs a claimer claims next: round-robin across workspaces, under the per-workspace cap. No I/O.

A claimer takes one run per workspace per turn, so one tenant's thousand due runs wait behind another
tenant's single run for one claim at most, not for the thousand.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from bson import ObjectId
from syncjobs.worker.pending_runs import PendingRun


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
) -> list[PendingRun]:
    """Up to `count` runs to claim at once: one per workspace per turn (round-robin from the workspace
    after `after`), each workspace's oldest first, at most one run per job, none beyond a workspace's cap
    (`running` counts its runs already going)."""
    order = claim_order(list(due), running, cap, after)
    queues = {workspace: deque(due[workspace]) for workspace in order}
    counts = dict(running)
    picked: list[PendingRun] = []
    jobs: set[ObjectId] = set()
    while order and len(picked) < count:
        for workspace in list(order):
            queue = queues[workspace]
            while queue and queue[0].job_id in jobs:
                queue.popleft()
            if not queue or not under_cap(counts.get(workspace, 0), cap):
                order.remove(workspace)
                continue
            run = queue.popleft()
            picked.append(run)
            jobs.add(run.job_id)
            counts[workspace] = counts.get(workspace, 0) + 1
            if len(picked) == count:
                break
    return picked
