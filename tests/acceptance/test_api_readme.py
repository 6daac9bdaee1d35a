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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from syncjobs.shared.tap_isolation import isolation

from tests.fixtures.syncjobs_up import UpStack

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


def test_the_readme_walkthrough_runs_as_written(stack: UpStack, tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    script = readme_api_script()
    assert re.search(r"^API=.*$", script, re.MULTILINE)
    # The one placeholder a reader fills in by hand: the `next` of a previous page (here: the newest run).
    script = script.replace(
        "before=<next>",
        'before=$(command curl -s "${auth[@]}" '
        '"$API/api/workspaces/$WS/sync-jobs/$JOB/runs?limit=1" | python3 -c '
        "\"import json, sys; print(json.load(sys.stdin)['runs'][0]['id'])\")",
    )
    values = f"API={stack.url} TOKEN={shlex.quote(stack.token)} WS={shlex.quote(stack.workspace_id)}"
    script = re.sub(r"^API=.*$", lambda _: values, script, count=1, flags=re.MULTILINE)
    log, python, database = (shlex.quote(str(answers)), shlex.quote(sys.executable), shlex.quote(stack.database_uri))
    prelude = "\n".join(
        [
            "set -euo pipefail",
            "shopt -s inherit_errexit",
            "curl() {",
            '  local out; out=$(command curl --fail-with-body -sS "$@")',
            f"  printf '%s\\n' \"$out\" >> {log}; printf '%s' \"$out\"",
            "}",
            f'syncjobs() {{ SYNCJOBS_MONGODB_URI={database} {python} -P -m syncjobs "$@"; }}',
            "",
        ]
    )
    started = datetime.now(UTC)
    result = subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

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
