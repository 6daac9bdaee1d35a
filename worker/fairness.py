"""Which workspace a claimer serves next: round-robin, under the per-workspace cap. No I/O.

A claimer claims one run per workspace per turn, so one tenant's thousand due runs wait behind another
tenant's single run for one claim at most, not for the thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bson import ObjectId


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


class RoundRobin:
    """Claims interleaved across workspaces: one per workspace per turn while `take` finds work."""

    def __init__(self, order: Sequence[ObjectId], running: Mapping[ObjectId, int], cap: int | None) -> None:
        self._turn = list(order)
        self._running = dict(running)
        self._cap = cap

    def __bool__(self) -> bool:
        return bool(self._turn)

    def next(self) -> ObjectId:
        """The workspace to claim from now (it moves to the back of the turn)."""
        workspace = self._turn.pop(0)
        self._turn.append(workspace)
        return workspace

    def claimed(self, workspace: ObjectId) -> None:
        self._running[workspace] = self._running.get(workspace, 0) + 1
        if not under_cap(self._running[workspace], self._cap):
            self.exhausted(workspace)

    def exhausted(self, workspace: ObjectId) -> None:
        """Nothing more to claim there this round (no due run, or its cap reached)."""
        if workspace in self._turn:
            self._turn.remove(workspace)
