"""The README's curl walk-through, run as written against `syncjobs up`: every call must succeed.

The shell block of the README's REST API section runs in bash with `set -e`; `curl` is wrapped with
`--fail-with-body` and records each answer, so a wrong route, body or status in the docs fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from syncjobs.shared.tap_isolation import isolation

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack, running_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash"),
]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_api_script() -> str:
    section = README.read_text().split("\n## The REST API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "no ```sh block in the README's API section"
    return match.group(1)


@pytest.fixture
def demo_stack(tmp_path: Path) -> Iterator[UpStack]:
    """`syncjobs up --demo` once its demo has run: the quickstart the walk-through follows."""
    with running_up(tmp_path, "--demo") as stack:
        eventually_blocking(lambda: "demo: run " in stack.log.read_text(), "the demo's run", within=120)
        yield stack


def test_the_readme_walkthrough_runs_as_written(demo_stack: UpStack, tmp_path: Path) -> None:
    stack = demo_stack
    answers = tmp_path / "answers.jsonl"
    script = readme_api_script()
    # The one placeholder a reader fills in by hand: the `next` of a previous page (here: the newest run).
    script = script.replace(
        "after=<next>",
        'after=$(command curl -s "${auth[@]}" '
        '"$SYNCJOBS_API/api/workspaces/$SYNCJOBS_WORKSPACE/sync-jobs/$JOB/runs?limit=1" | python3 -c '
        "\"import json, sys; print(json.load(sys.stdin)['runs'][0]['id'])\")",
    )
    log, python = shlex.quote(str(answers)), shlex.quote(sys.executable)
    prelude = "\n".join(
        [
            "set -euo pipefail",
            "shopt -s inherit_errexit",
            "curl() {",
            '  local out; out=$(command curl --fail-with-body -sS "$@")',
            f"  printf '%s\\n' \"$out\" >> {log}; printf '%s' \"$out\"",
            "}",
            f'syncjobs() {{ {python} -P -m syncjobs "$@"; }}',
            stack.export_line,  # as pasted from the banner (localhost: the API listens on every address)
            "",
        ]
    )
    started = datetime.now(UTC)
    result = subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + answers.read_text()[-1500:]

    bodies: list[Any] = [json.loads(line) for line in answers.read_text().splitlines() if line.strip()]
    assert {"status": "ok", "details": {"tapIsolation": isolation()}} in bodies
    assert any(body.get("openapi") == "3.1.0" for body in bodies)
    assert result.stdout.count("sjt_") >= 1  # the workspace token, printed once
    source = next(body for body in bodies if body.get("kind") == "mongodb" and "dataSourceId" not in body)
    assert source["config"]["uri"] == "********"
    hourly = next(body for body in bodies if body.get("schedule", {}).get("timezone") == "Asia/Kolkata")
    next_run = datetime.fromisoformat(hourly["nextRunAt"])
    assert started < next_run <= started + timedelta(hours=1)
    assert (next_run.minute, next_run.second) == (30, 0)  # on the hour in Kolkata (+05:30)
    status = next(body for body in bodies if "nextRuns" in body)
    assert all(re.fullmatch(r"\S+T09:00:00-0[45]:00", fire) for fire in status["nextRuns"])
    assert len(status["nextRuns"]) == 5
    assert any(set(body) == {"runId", "status"} for body in bodies)
    assert any(set(body) == {"runs", "next"} for body in bodies)
    # the walk-through's source is the demo's database: its manual run of orders and customers really syncs
    # Four runs asked: one, the same one twice through an Idempotency-Key, and the one it cancels.
    plain, keyed, keyed_again, _cancelled = [body["runId"] for body in bodies if set(body) == {"runId", "status"}]
    assert keyed == keyed_again and len({plain, keyed, _cancelled}) == 3
    run_id = plain
    run = eventually_blocking(lambda: _ended_run(stack, run_id), "the walk-through's run ends", within=60)
    assert run["status"] == "succeeded", run
    assert set(run["stats"]["entities"]) == {"orders", "customers"}


def _ended_run(stack: UpStack, run_id: str) -> dict[str, Any] | None:
    with MongoClient(stack.database_uri) as client:
        run = client.syncjobs.job_runs.find_one({"_id": ObjectId(run_id)})
    return run if run is not None and run["status"] not in ("pending", "running") else None
