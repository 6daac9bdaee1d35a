"""The README's quickstart as a new user runs it: `syncjobs up --demo` syncs the seeded documents, and after a
restart on the same data dir the demo's job runs again on the same database address."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from syncjobs.demo import SEED
from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import running_up

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"
DEMO_RESULT = re.compile(r"^demo: run (\S+) (\w+)(?:: (.*))?$", re.MULTILINE)


def quickstart_blocks() -> list[str]:
    section = README.read_text().split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) >= 2, "the quickstart's install block and its CLI block"
    return blocks


def quickstart_commands() -> list[str]:
    return [line for line in quickstart_blocks()[0].splitlines() if line.strip()]


def _pasted(export_line: str) -> dict[str, str]:
    """The test's environment, without its SYNCJOBS_ variables, plus the banner's export line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    for assignment in shlex.split(export_line.removeprefix("export ")):
        name, value = assignment.split("=", 1)
        env[name] = value
    return env


def _demo_result(log: Path) -> tuple[str, str, str] | None:
    found = DEMO_RESULT.search(log.read_text())
    return None if found is None else (found.group(1), found.group(2), found.group(3) or "")


def test_the_quickstart_syncs_the_seeded_documents_and_again_after_a_restart(tmp_path: Path) -> None:
    commands = quickstart_commands()
    assert commands[0].startswith("python3 -m venv .venv") and commands[1] == "pip install -e '.[embedded]'"
    assert commands[-1] == "syncjobs up --demo"  # run below with the test's own data dir and a free API port
    seeded = sum(SEED.values())
    with running_up(tmp_path, "--demo") as first:
        _, status, counts = eventually_blocking(lambda: _demo_result(first.log), "the demo's run", within=120)
        assert status == "succeeded", first.logs()[-3000:]
        assert counts.startswith(f"{seeded} read, {seeded} inserted")
        with MongoClient(first.database_uri) as client:
            copied = {name: client.demo_warehouse[name].count_documents({}) for name in SEED}
        assert copied == SEED

        # the CLI block, as written, in a shell where the export line was pasted
        cli = subprocess.run(
            ["bash", "-c", "\n".join(["set -euo pipefail", first.export_line, quickstart_blocks()[1]])],
            env=_pasted(first.export_line) | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=README.parent,
        )
        assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
        assert "demo-every-minute" in cli.stdout and "unchanged job demo-every-minute" in cli.stdout
        assert "demo-nightly-full" in cli.stdout and "sjt_" in cli.stdout and "syncjobs 0.1.0" in cli.stdout

    with running_up(tmp_path) as second:
        assert second.database_uri == first.database_uri
        again = subprocess.run(
            [sys.executable, "-P", "-m", "syncjobs", "demo"],
            env=_pasted(second.export_line),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "demo: unchanged source demo-shop" in again.stdout  # nothing declared twice
        assert re.search(r"^demo: run \S+ succeeded", again.stdout, re.MULTILINE), again.stdout
        assert 'mongosh "$SYNCJOBS_MONGODB_URI" --quiet' in again.stdout
        with MongoClient(second.database_uri) as client:
            assert client.demo_shop.orders.count_documents({}) == SEED["orders"]  # seeded once
            assert {name: client.demo_warehouse[name].count_documents({}) for name in SEED} == SEED
