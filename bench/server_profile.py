"""Where the server's CPU goes in a burst (issue 22): `bench.worker_burst`'s burst, run as it runs it,
with py-spy sampling the SecantusDB process from the moment the bench starts counting CPU (1 s before
the due time) until every run has ended, then the samples grouped by the command they serve.

    python -m bench.server_profile --jobs 300 --named-entity --out /tmp/burst.raw
    python -m bench.server_profile --analyze /tmp/burst.raw      # a recorded profile again

Needs `py-spy` beside this interpreter (`pip install py-spy`; ptrace allowed). Only samples of threads
on the CPU are recorded (py-spy's default, no `--idle`), so a group's share of samples is its share of
the server's CPU. Groups: the command handler on the stack (`_insert`, `_update`, `_find_and_modify`,
`_get_more`...), else what the connection thread did outside a command (accepting, reading the wire,
the thread's start); within them a few cross-cutting costs are counted apart (retryable-write records,
the oplog, index keys, change-stream matching, BSON, the storage commit).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from syncjobs.shared.logging import configure_logging

from bench import worker_burst
from bench.worker_support import server

PY_SPY = Path(sys.executable).with_name("py-spy")

# A frame as py-spy's raw format prints it: `function (path/to/module.py:line)`.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# Costs that cut across commands: (label, file suffix or None, function names or None).
CROSS_CUTTING: list[tuple[str, str | None, frozenset[str] | None]] = [
    ("retryable-write records (prune/lookup/record)", "transactions.py", None),
    ("session registry", "sessions.py", None),
    ("oplog write (_emit_oplog)", None, frozenset({"_emit_oplog", "_merge_oplog_on_session"})),
    ("change-stream scan and match", "changestreams.py", None),
    (
        "index keys and entries",
        None,
        frozenset({"_index_key", "_index_key_variants", "_index_field_values", "_pack_entry", "_escape_kb"}),
    ),
    ("storage commit (WiredTiger)", None, frozenset({"_commit_batch_transaction"})),
    ("BSON encode/decode", "bson/__init__.py", None),
    ("wire read/reply", "wire.py", None),
    ("command validation (validation_errors.py)", "validation_errors.py", None),
    ("metrics", "metrics.py", None),
]


def parse_frame(text: str) -> tuple[str, str]:
    """(function, file) of one frame."""
    found = FRAME.match(text.strip())
    if found is None:
        return text.strip(), ""
    return found["function"], found["file"]


def read_samples(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """Each stack (root first) with its sample count."""
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [parse_frame(frame) for frame in stack.split(";")]
        samples.append((frames, int(count)))
    return samples


def handler_names() -> set[str]:
    """The server's command handlers' function names (`_insert`...), read from its source without
    importing it (SecantusDB is GPL-2.0: run, never imported)."""
    source = next(Path(sys.prefix).glob("lib/python*/site-packages/secantus/commands.py"))
    table = source.read_text().split("_HANDLERS: dict[str, CommandHandler] = {", 1)[1].split("}", 1)[0]
    return set(re.findall(r":\s*(_[a-z_]+),", table))


def group_of(frames: list[tuple[str, str]], handlers: set[str]) -> str:
    """The command a stack serves (its handler), else what its thread does outside one."""
    for function, file in frames:
        if file.endswith("commands.py") and function in handlers:
            return function.lstrip("_")
    functions = {function for function, _ in frames}
    files = {file.rsplit("/", 1)[-1] for _, file in frames}
    if "_stream_exhaust_getmore" in functions:
        return "(exhaust getMore)"
    if "_stream_awaitable_hello" in functions or "_await_hello" in functions:
        return "(awaitable hello)"
    if "dispatch" in functions:
        return "(dispatch, before a handler)"
    if "_handle_client" in functions:
        return "(connection thread outside a command)"
    if "_serve_forever" in functions:
        return "(accept loop)"
    if "server.py" in files:
        return "(server, other)"
    return "(other threads: " + (frames[0][0] if frames else "?") + ")"


def summarize(path: Path, top: int = 25) -> str:
    samples = read_samples(path)
    handlers = handler_names()
    total = sum(count for _, count in samples) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    cross: Counter[str] = Counter()
    cross_by_group: dict[str, Counter[str]] = {}
    for frames, count in samples:
        function, file = frames[-1]
        own[f"{function} ({file.rsplit('/', 2)[-1] if file else ''})"] += count
        for name in {f"{f} ({p.rsplit('/', 2)[-1] if p else ''})" for f, p in frames}:
            inclusive[name] += count
        group = group_of(frames, handlers)
        groups[group] += count
        for label, suffix, functions in CROSS_CUTTING:
            if any(
                (suffix is not None and p.endswith(suffix)) or (functions is not None and f in functions)
                for f, p in frames
            ):
                cross[label] += count
                cross_by_group.setdefault(label, Counter())[group] += count

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [f"{total} samples of threads on the CPU ({path})", "", "By the command served (handler on the stack):"]
    lines += [f"  {pct(n)}  {name}" for name, n in groups.most_common()]
    lines += ["", "Cross-cutting (a sample can count in several), with the commands they were under:"]
    for label, n in cross.most_common():
        under = ", ".join(f"{g} {100 * c / total:.1f}%" for g, c in cross_by_group[label].most_common(4))
        lines.append(f"  {pct(n)}  {label}  [{under}]")
    lines += ["", f"Top {top} functions by self time:"]
    lines += [f"  {pct(n)}  {name}" for name, n in own.most_common(top)]
    lines += ["", f"Top {top} functions by total time (on the stack):"]
    lines += [f"  {pct(n)}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


class Sampler:
    """py-spy recording one process between `start` and `stop`."""

    def __init__(self, out: Path, rate: int, native: bool, gil: bool) -> None:
        self.out, self.rate, self.native, self.gil = out, rate, native, gil
        self.process: subprocess.Popen[bytes] | None = None
        self.log = out.with_suffix(".py-spy.log")

    def start(self, pid: int) -> None:
        command = [str(PY_SPY), "record", "--pid", str(pid), "--format", "raw", "--rate", str(self.rate)]
        command += ["--output", str(self.out)]
        command += ["--native"] if self.native else ["--nonblocking"]
        command += ["--gil"] if self.gil else []
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        self.process.wait(60)


def profiled_burst(args: argparse.Namespace) -> None:
    """worker_burst's burst on a fresh server, the server sampled over the window the bench counts."""
    sampler = Sampler(args.out, args.rate, args.native, args.gil)
    counting = worker_burst.worker_cpu_by_kind
    calls = 0
    server_pid = 0

    def counting_and_sampling(workers: list[int]) -> Counter[str]:
        # worker_burst calls this just before the due time and again once every run has ended.
        nonlocal calls
        calls += 1
        if calls == 1:
            found = counting(workers)
            sampler.start(server_pid)
            return found
        sampler.stop()
        return counting(workers)

    worker_burst.worker_cpu_by_kind = counting_and_sampling
    with tempfile.TemporaryDirectory() as logs, server() as db_server:
        server_pid = db_server.process.pid
        found = worker_burst.run_burst(
            db_server.uri,
            server_pid,
            Path(logs),
            jobs=args.jobs,
            replicas=args.replicas,
            executor=args.executor,
            concurrency=args.concurrency,
            named_entity=args.named_entity,
        )
    text, _, _ = worker_burst.report(
        found.done,
        found.due,
        found.late,
        sum(found.cpu.values()),
        found.server_cpu,
        found.counters,
        args.replicas,
        args.executor,
        args.jobs,
    )
    print(text)
    print(f"  load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  server CPU over the window: {found.server_cpu:.2f}s; py-spy log: {sampler.log}")
    print()
    print(summarize(args.out, args.top))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--executor", default="warm", choices=["warm", "hosted", "cold", "true"])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--named-entity", action="store_true")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="C frames too (py-spy then pauses the server)")
    parser.add_argument(
        "--gil", action="store_true", help="only the thread holding the GIL: the server's Python CPU, one core at most"
    )
    parser.add_argument("--out", type=Path, default=Path("server-burst.raw"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--analyze", type=Path, default=None, help="only summarize this recorded raw profile")
    args = parser.parse_args()
    if args.analyze is not None:
        print(summarize(args.analyze, args.top))
        return
    if not PY_SPY.exists():
        parser.error(f"no py-spy at {PY_SPY}: pip install py-spy")
    configure_logging("warning")
    profiled_burst(args)


if __name__ == "__main__":
    main()
