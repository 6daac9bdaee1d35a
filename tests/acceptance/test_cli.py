"""The `syncjobs` command as a user types it: the client commands against a real `syncjobs up`."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import api_tokens

from tests.fixtures.syncjobs_up import UpStack

ROOT = Path(__file__).resolve().parents[2]
CLIENT_VARIABLES = ("SYNCJOBS_API", "SYNCJOBS_TOKEN", "SYNCJOBS_WORKSPACE")


def _syncjobs(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "syncjobs", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def _exported(stack: UpStack, **overrides: str) -> dict[str, str]:
    """The test's environment plus the banner's export line, as a user pastes it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    for assignment in shlex.split(stack.export_line.removeprefix("export ")):
        name, value = assignment.split("=", 1)
        env[name] = value
    return env | overrides


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        ([], ()),
        (["up"], ("SYNCJOBS_MONGODB_URI", "SYNCJOBS_API_PORT")),
        (["api"], ("SYNCJOBS_MONGODB_URI", "SYNCJOBS_API_PORT", "SYNCJOBS_SECRET_KEYS")),
        (["worker"], ("SYNCJOBS_MONGODB_URI", "SYNCJOBS_LEASE_TTL_SECONDS", "SYNCJOBS_SECRET_KEYS")),
        (["exec"], ("SYNCJOBS_MONGODB_URI", "SYNCJOBS_DATABASE", "SYNCJOBS_SECRET_KEYS")),
        (["token"], ()),
        (["token", "create"], (*CLIENT_VARIABLES, "SYNCJOBS_MONGODB_URI")),
        (["token", "list"], CLIENT_VARIABLES),
        (["token", "revoke"], CLIENT_VARIABLES),
        (["token", "rotate-admin"], ("SYNCJOBS_MONGODB_URI", "SYNCJOBS_DATABASE")),
        (["jobs"], ()),
        *[
            (["jobs", action], CLIENT_VARIABLES)
            for action in ("list", "get", "create", "run", "status", "toggle", "runs")
        ],
        (["apply"], CLIENT_VARIABLES),
        (["demo"], (*CLIENT_VARIABLES, "SYNCJOBS_MONGODB_URI")),
        (["secrets"], ()),
        (["secrets", "rotate"], ("SYNCJOBS_MONGODB_URI", "SYNCJOBS_SECRET_KEYS")),
    ],
)
def test_every_subcommand_has_help_naming_the_variables_it_reads(
    command: list[str], variables: tuple[str, ...]
) -> None:
    result = _syncjobs(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: syncjobs")
    flat = " ".join(result.stdout.split())
    assert [name for name in variables if name not in flat] == []


def test_version() -> None:
    result = _syncjobs("--version")
    assert result.returncode == 0 and result.stdout.strip() == "syncjobs 0.1.0"


def test_a_missing_workspace_reads_the_same_in_every_client_command() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    env |= {"SYNCJOBS_API": "http://127.0.0.1:9", "SYNCJOBS_TOKEN": "sjt_x"}
    messages = set()
    for command in (["jobs", "list"], ["token", "list"], ["token", "create"], ["apply", "-f", "examples/jobs.yaml"]):
        result = _syncjobs(*command, env=env | {"SYNCJOBS_MONGODB_URI": "mongodb://127.0.0.1:9"})
        assert result.returncode == 1, result.stderr
        messages.add(result.stderr.split(": ", 1)[1])
    assert messages == {
        "no workspace: set SYNCJOBS_WORKSPACE (the workspace id `syncjobs up` prints) or pass --workspace\n"
    }


def test_token_create_list_revoke_through_the_api(stack: UpStack) -> None:
    env = _exported(stack)
    created = _syncjobs("token", "create", "--name", "ci", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("sjt_")
    assert stack.request("GET", stack.ws(), token=token)[0] == 200
    with MongoClient(stack.database_uri) as client:
        stored = client.syncjobs.api_tokens.find_one({"name": "ci"})
    assert stored is not None and token not in str(stored)  # only its hash

    listed = _syncjobs("token", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [entry] = [t for t in json.loads(listed.stdout) if t["name"] == "ci"]
    table = _syncjobs("token", "list", env=env).stdout.splitlines()
    assert table[0].split()[:3] == ["id", "name", "scope"] and any(entry["id"] in line for line in table)

    revoked = _syncjobs("token", "revoke", entry["id"], env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert stack.request("GET", stack.ws(), token=token)[0] == 401


def test_token_create_refuses_an_unknown_workspace(stack: UpStack) -> None:
    result = _syncjobs("token", "create", "--workspace", str(ObjectId()), env=_exported(stack))
    assert result.returncode == 1
    assert "404" in result.stderr and "not_found" in result.stderr
    with MongoClient(stack.database_uri) as client:
        assert client.syncjobs.api_tokens.count_documents({"name": "cli"}) == 0


def test_apply_creates_then_a_second_apply_changes_nothing(stack: UpStack, tmp_path: Path) -> None:
    env = _exported(stack)
    first = _syncjobs("apply", "-f", "examples/jobs.yaml", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "create    source demo-shop",
        "create    destination demo-warehouse",
        "create    job demo-every-minute",
        "applied 3 changes",
    ]
    [job] = stack.call("GET", stack.ws("/sync-jobs"))["items"]
    assert job["schedule"] == {"cron": "* * * * *", "timezone": "UTC"} and job["syncMode"] == "incremental"
    second = _syncjobs("apply", "-f", "examples/jobs.yaml", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == "no changes"
    assert all(line.startswith("unchanged") for line in second.stdout.splitlines()[:-1])
    assert stack.call("GET", stack.ws(f"/sync-jobs/{job['id']}"))["version"] == job["version"]

    edited = tmp_path / "jobs.yaml"
    edited.write_text((ROOT / "examples" / "jobs.yaml").read_text().replace('cron: "* * * * *"', "cron: '@hourly'"))
    planned = _syncjobs("apply", "-f", str(edited), "--dry-run", env=env)
    assert planned.stdout.splitlines()[2:] == [
        "update    job demo-every-minute (schedule)",
        "1 to change (dry run: nothing applied)",
    ]
    assert stack.call("GET", stack.ws(f"/sync-jobs/{job['id']}"))["version"] == job["version"]
    updated = _syncjobs("apply", "-f", str(edited), env=env)
    assert updated.returncode == 0 and updated.stdout.splitlines()[-1] == "applied 1 change"
    stored = stack.call("GET", stack.ws(f"/sync-jobs/{job['id']}"))
    assert stored["schedule"] == {"cron": "@hourly", "timezone": "UTC"}  # as written
    assert _syncjobs("apply", "-f", str(edited), env=env).stdout.splitlines()[-1] == "no changes"


def test_jobs_commands_through_the_api(stack: UpStack, tmp_path: Path) -> None:
    env = _exported(stack)
    assert _syncjobs("apply", "-f", "examples/jobs.yaml", env=env).returncode == 0
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        "name: hourly\nsource: demo-shop\ndestination: demo-warehouse\n"
        "schedule: {cron: '@hourly', timezone: Europe/Paris}\n"
    )
    created = _syncjobs("jobs", "create", "-f", str(job_file), "--json", env=env)
    assert created.returncode == 0, created.stderr
    job: dict[str, Any] = json.loads(created.stdout)
    assert job["schedule"] == {"cron": "@hourly", "timezone": "Europe/Paris"}

    listed = _syncjobs("jobs", "list", env=env).stdout.splitlines()
    assert listed[0].split()[:2] == ["id", "name"]
    assert sorted(line.split()[1] for line in listed[1:]) == ["demo-every-minute", "hourly"]
    got = _syncjobs("jobs", "get", "hourly", "--json", env=env)
    assert json.loads(got.stdout)["id"] == job["id"]

    toggled = _syncjobs("jobs", "toggle", job["id"], "--json", env=env)
    assert toggled.returncode == 0 and json.loads(toggled.stdout)["enabled"] is False
    set_on = _syncjobs("jobs", "toggle", "hourly", "--enabled", "true", "--json", env=env)
    assert json.loads(set_on.stdout)["enabled"] is True

    started = _syncjobs("jobs", "run", "hourly", "--json", env=env)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["runId"]
    status = _syncjobs("jobs", "status", "hourly", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["jobId"] == job["id"]
    assert "nextRuns" in _syncjobs("jobs", "status", "hourly", env=env).stdout
    runs = _syncjobs("jobs", "runs", "hourly", "--limit", "5", env=env)
    assert runs.returncode == 0 and run_id in runs.stdout
    assert runs.stdout.splitlines()[0].split()[:3] == ["id", "trigger", "status"]

    unknown = _syncjobs("jobs", "get", "nope", env=env)
    assert unknown.returncode == 1 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr


def test_token_create_admin_writes_to_the_database_and_the_token_acts_in_every_workspace(stack: UpStack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    result = _syncjobs(
        "token", "create", "--admin", "--name", "ops", env=env | {"SYNCJOBS_MONGODB_URI": stack.database_uri}
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert stack.request("POST", "/api/workspaces", {"name": "second"}, token=token)[0] == 201


async def test_token_rotate_admin_prints_a_new_admin_token_and_revokes_the_others(
    db: Database, mongo_uri: str, db_name: str
) -> None:
    """In a database of its own: rotating revokes every admin token, the shared stack's included."""
    old = await api_tokens.create_token(db, None, "old admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    result = _syncjobs(
        "token", "rotate-admin", env=env | {"SYNCJOBS_MONGODB_URI": mongo_uri, "SYNCJOBS_DATABASE": db_name}
    )
    assert result.returncode == 0, result.stderr
    grant = await api_tokens.resolve_token(db, result.stdout.strip())
    assert grant is not None and grant.is_admin
    assert await api_tokens.resolve_token(db, old) is None
