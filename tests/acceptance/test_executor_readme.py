"""The README's `syncjobs exec` recipe, as written, against `syncjobs up`; and a key that cannot open the
stored secrets ends in one failed result line, not a traceback on stdout."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient
from syncjobs.shared.secrets import new_key

from tests.fixtures.syncjobs_up import UpStack

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"


def _block(heading: str) -> str:
    section = README.read_text().split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, f"no ```sh block under {heading}"
    return match.group(1)


def _results(stdout: str) -> list[dict[str, object]]:
    return [event for line in stdout.splitlines() if (event := json.loads(line))["event"] == "result"]


def test_the_readme_exec_recipe_runs_as_written_against_up(stack: UpStack, tmp_path: Path) -> None:
    with MongoClient(stack.database_uri) as client:
        client.demo_shop.orders.insert_many([{"_id": n, "updatedAt": n} for n in range(5)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    apply = subprocess.run(
        [
            "bash",
            "-c",
            f"{stack.export_line}\n{shlex.quote(sys.executable)} -P -m syncjobs apply -f examples/jobs.yaml",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=README.parent,
    )
    assert apply.returncode == 0, apply.stderr
    (tmp_path / "syncjobs-data").symlink_to(stack.data_dir)  # the README's default data dir, here
    auth = next(line for line in _block("The REST API").splitlines() if line.startswith("auth="))
    script = "\n".join(
        [
            "set -euo pipefail",
            f'syncjobs() {{ {shlex.quote(sys.executable)} -P -m syncjobs "$@"; }}',
            stack.export_line,
            auth,
            _block("The executor"),
        ]
    )
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    dry, real = _results(result.stdout)
    assert dry["status"] == real["status"] == "succeeded", result.stdout
    assert dry["dryRun"] is True and real["dryRun"] is False


def test_a_key_that_does_not_open_the_secrets_ends_in_one_failed_result(stack: UpStack) -> None:
    source, destination = stack.crm_to_warehouse()
    job = stack.call(
        "POST",
        stack.ws("/sync-jobs"),
        {
            "name": "j",
            "dataSourceId": source["id"],
            "destinationDatabaseId": destination["id"],
            "schedule": {"cron": "0 0 * * *"},
        },
    )
    run = stack.call("POST", stack.ws(f"/sync-jobs/{job['id']}/run"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    env |= {"SYNCJOBS_MONGODB_URI": stack.database_uri, "SYNCJOBS_SECRET_KEYS": new_key()}
    result = subprocess.run(
        [sys.executable, "-P", "-m", "syncjobs", "exec", "--run-id", run["runId"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout
    [failed] = _results(result.stdout)
    assert failed["status"] == "failed" and "cannot be decrypted" in str(failed["error"])
    assert "\n" not in str(failed["error"])


def test_exec_names_a_folder_that_is_no_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    result = subprocess.run(
        [sys.executable, "-P", "-m", "syncjobs", "exec", "--data-dir", str(tmp_path), "--run-id", "0" * 24],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and f"{tmp_path} is not a data dir of `syncjobs up`" in result.stderr
