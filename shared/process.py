"""Child processes that die with the process that started them.

The worker starts the executor and the executor starts a Singer tap; if either parent is SIGKILLed, its
child must not live on (an orphaned executor writing to a destination while a new leader marks its run
lost; a tap nobody reads). On Linux the child asks the kernel for SIGKILL when its parent dies
(PR_SET_PDEATHSIG), between fork and exec; elsewhere this is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl
    return None


# Looked up once in the parent: the child, between fork and exec, only calls it.
_prctl = _find_prctl()


def die_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` for a child that gets SIGKILL when this process dies.

    Compatible with `start_new_session` / `process_group`: the death signal is about the parent, not
    the group. The kernel sends it when the parent's *thread* that forked ends, so start children from
    the main (event loop) thread, as asyncio does.
    """
    parent = os.getpid()

    def set_parent_death_signal() -> None:  # runs in the child between fork and exec
        if _prctl is None:
            return
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return set_parent_death_signal


def limit_address_space(megabytes: int) -> None:
    """RLIMIT_AS for this process and what it starts: an allocation past it is a MemoryError here, so a run
    that needs too much memory fails saying so instead of taking the host's memory from other tenants."""
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
