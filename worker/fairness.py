"""Which runs a claimer claims next: round-robin across workspaces, under the per-workspace cap and the
fair share. No I/O.

A claimer takes one run per workspace per turn, so one tenant's thousand due runs wait behind another
tenant's single run for one claim at most, not for the thousand. And while another workspace has runs
waiting, no workspace holds more than its share of this replica's slots (`SYNCJOBS_WORKSPACE_SHARE`, half
by default): four slow runs of one tenant cannot hold every slot while another tenant's run waits.
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
    *,
    here: Mapping[ObjectId, int] | None = None,
    share: int | None = None,
) -> list[PendingRun]:
    """Up to `count` runs to claim at once: one per workspace per turn (round-robin from the workspace
    after `after`), each workspace's oldest first, at most one run per job, none beyond a workspace's cap
    (`running` counts its runs already going), and none that would take a workspace past `share` of this
    replica's slots (`here` counts its runs on this replica) while another workspace has a run to claim."""
    order = claim_order(list(due), running, cap, after)
    queues = {workspace: deque(due[workspace]) for workspace in order}
    counts = dict(running)
    local = dict(here or {})
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
            if share is not None and local.get(workspace, 0) >= share:
                if any(queues[other] for other in order if other != workspace):
                    continue  # at its share: its turn goes to the others while they have runs to claim
            run = queue.popleft()
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
