"""Kills the process groups of a worker's cold executors when the worker dies, however it dies.

A cold executor is a new process in a session of its own with PR_SET_PDEATHSIG: it dies with the worker,
but its own children do not unless they carry the same signal (our taps do; the children of an operator's
SYNCJOBS_EXECUTOR_COMMAND need not), and they would go on writing while the run is marked lost. Warm
executors watch the worker's lifeline and kill their own group; a cold one may be any program, so one
keeper process per worker watches for them: the worker tells it, over a pipe only the worker writes to,
each cold group it starts (`+PGID`) and ends (`-PGID`). End of file on that pipe without a `stop` line
means the worker is gone: the keeper SIGKILLs every group still registered, then exits.

    python -P -m syncjobs.worker.group_keeper --groups-fd FD
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import subprocess
import sys

from syncjobs.shared.logging import get_logger

log = get_logger(__name__)

STOP = b"stop"


class GroupKeeper:
    """The worker's side: the keeper, started on the first cold executor, told of each group. Synchronous
    (a few bytes on a pipe), so one keeper serves the process whatever event loop runs."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._write: int | None = None

    def add(self, pgid: int) -> None:
        """Register a cold executor's group (started in a session of its own: its pgid is its pid)."""
        if self._process is None:
            self._start()
        self._send(f"+{pgid}".encode())

    def remove(self, pgid: int) -> None:
        """The group was killed (every run's group is, at its end): never kill that number again."""
        self._send(f"-{pgid}".encode())

    def close(self) -> None:
        """The worker stops on its own: the keeper exits without killing anything."""
        if self._write is not None:
            self._send(STOP)
            os.close(self._write)
            self._write = None
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5.0)
            self._process = None

    def _start(self) -> None:
        read, write = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-m", __name__, "--groups-fd", str(read)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(read,),
                start_new_session=True,  # not in the worker's group, no death signal: it outlives the worker
            )
        except OSError as exc:
            os.close(write)
            log.warning("group_keeper_not_started", error=str(exc))
            return
        finally:
            os.close(read)
        self._write = write

    def _send(self, line: bytes) -> None:
        if self._write is None:
            return
        try:
            os.write(self._write, line + b"\n")
        except OSError as exc:  # the keeper died: cold executors' children may outlive a dead worker
            log.warning("group_keeper_lost", error=str(exc))
            os.close(self._write)
            self._write = None


_keeper = GroupKeeper()
atexit.register(_keeper.close)  # an interpreter that exits normally stops on its own


def cold_groups() -> GroupKeeper:
    """This process's keeper of cold executor groups."""
    return _keeper


def keep(groups_fd: int) -> int:
    """Read registrations until end of file; without `stop` first, kill every group still registered."""
    groups: set[int] = set()
    pending = b""
    stopped = False
    while chunk := os.read(groups_fd, 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line == STOP:
                stopped = True
            elif line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    if not stopped:
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncjobs.worker.group_keeper")
    parser.add_argument("--groups-fd", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C stops the worker, which says `stop`
    return keep(args.groups_fd)


if __name__ == "__main__":
    raise SystemExit(main())
