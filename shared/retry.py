"""Retrying: how long to wait before the next attempt, for every retry loop of the product.

One formula: first * factor^(attempt-1), capped; with jitter, "equal jitter" (half fixed, half random) so
that retries of many things that failed together spread out.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

# How long a loop waits after its database call failed before it tries again.
DB_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Backoff:
    first_seconds: float
    factor: float = 2.0
    cap_seconds: float = math.inf
    jitter: bool = False

    def seconds(self, attempt: int, random: Callable[[], float] = _random.random) -> float:
        """The wait after failed attempt `attempt` (1 = the first)."""
        base = min(self.first_seconds * self.factor ** (attempt - 1), self.cap_seconds)
        return base / 2 + base / 2 * random() if self.jitter else base
