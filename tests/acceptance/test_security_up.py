"""Issue 8 on `syncjobs up`: a workspace token made over REST syncs between password-protected databases,
every attack fails, mongosh shows only ciphertext, and no secret appears anywhere in the logs."""

from __future__ import annotations

import json
import secrets
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack, running_up

pytestmark = pytest.mark.slow


def call(stack: UpStack, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    return stack.request(method, path, body, token=token)


@pytest.fixture
def stack(tmp_path: Path, mongo_uri: str, db_name: str) -> Iterator[UpStack]:
    """`syncjobs up` on the session server (so the test's own database users exist there), logging at debug."""
    environment = {"SYNCJOBS_MONGODB_URI": mongo_uri, "SYNCJOBS_DATABASE": db_name, "SYNCJOBS_LOG_LEVEL": "debug"}
    with running_up(tmp_path, **environment) as running:
        yield running


@pytest.fixture
def database_users(mongo_uri: str) -> Iterator[dict[str, str]]:
    """Two users with random passwords on the session server: what a tenant's real databases would need."""
    users = {f"u_{secrets.token_hex(4)}": f"pw-{secrets.token_hex(12)}" for _ in range(2)}
    with MongoClient(mongo_uri) as client:
        for user, password in users.items():
            client.admin.command("createUser", user, pwd=password, roles=["root"])
        try:
            yield users
        finally:
            for user in users:
                client.admin.command("dropUser", user)


def _authenticated(mongo_uri: str, user: str, password: str) -> str:
    return mongo_uri.replace("mongodb://", f"mongodb://{user}:{password}@") + "&authSource=admin"


def test_a_workspace_token_syncs_its_own_data_and_reaches_nothing_else(
    stack: UpStack, tmp_path: Path, mongo_uri: str, db_name: str, database_users: dict[str, str]
) -> None:
    key_file = tmp_path / "data" / "secret-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (reader, reader_pw), (writer, writer_pw) = database_users.items()
    admin = stack.token
    status, workspace = call(stack, "POST", "/api/workspaces", admin, {"name": "tenant"})
    assert status == 201
    ws = f"/api/workspaces/{workspace['id']}"
    status, created = call(stack, "POST", f"{ws}/tokens", admin, {"name": "tenant token"})
    assert status == 201
    token = created["token"]
    source_db, dest_db = f"src_{secrets.token_hex(4)}", f"dst_{secrets.token_hex(4)}"
    with MongoClient(mongo_uri) as client:
        client[source_db].orders.insert_many([{"_id": i, "total": i * 10} for i in range(5)])
    webhook_secret = f"whsec-{secrets.token_hex(16)}"
    try:
        source_config = {"uri": _authenticated(mongo_uri, reader, reader_pw), "database": source_db}
        status, source = call(
            stack, "POST", f"{ws}/data-sources", token, {"name": "shop", "kind": "mongodb", "config": source_config}
        )
        assert status == 201, source
        dest_config = {"uri": _authenticated(mongo_uri, writer, writer_pw), "database": dest_db}
        status, dest = call(
            stack, "POST", f"{ws}/destinations", token, {"name": "dw", "kind": "mongodb", "config": dest_config}
        )
        assert status == 201, dest
        hook = {"url": "https://hooks.example.com/x", "secret": webhook_secret}
        assert call(stack, "POST", f"{ws}/webhooks", token, hook)[0] == 201
        job_body = {
            "name": "orders",
            "dataSourceId": source["id"],
            "destinationDatabaseId": dest["id"],
            "schedule": {"cron": "0 0 1 1 *"},
        }
        status, job = call(stack, "POST", f"{ws}/sync-jobs", token, job_body)
        assert status == 201, job
        assert call(stack, "POST", f"{ws}/sync-jobs/{job['id']}/run", token)[0] == 202

        def finished_runs() -> list[Any]:
            _, runs = call(stack, "GET", f"{ws}/sync-jobs/{job['id']}/runs", token)
            return [r for r in runs["runs"] if r["status"] not in ("pending", "running")]

        finished = eventually_blocking(finished_runs, "the run finished", within=90, every=0.2)
        assert finished[0]["status"] == "succeeded", finished[0]
        with MongoClient(mongo_uri) as client:
            assert client[dest_db].orders.count_documents({}) == 5

        # the four attacks, with the workspace token, on `up` (which allows loopback)
        raw = {"name": "pwn", "kind": "command", "config": {"command": ["sh", "-c", "id > /tmp/x"]}}
        assert call(stack, "POST", f"{ws}/data-sources", token, raw)[0] == 403
        control = {"uri": mongo_uri, "database": db_name}
        assert (
            call(stack, "POST", f"{ws}/data-sources", token, {"name": "c", "kind": "mongodb", "config": control})[0]
            == 422
        )
        assert (
            call(stack, "POST", f"{ws}/destinations", token, {"name": "c", "kind": "mongodb", "config": control})[0]
            == 422
        )
        for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/"):
            http = {"name": "h", "kind": "http", "config": {"baseUrl": url, "entities": {"a": {"path": "/a"}}}}
            assert call(stack, "POST", f"{ws}/data-sources", token, http)[0] == 422
            assert call(stack, "POST", f"{ws}/webhooks", token, {"url": url})[0] == 422
        # revoked: refused at once
        assert call(stack, "DELETE", f"{ws}/tokens/{created['id']}", admin)[0] == 204
        assert call(stack, "GET", ws, token)[0] == 401

        shown = subprocess.run(
            [
                "mongosh",
                mongo_uri,
                "--quiet",
                "--eval",
                f"const d = db.getSiblingDB('{db_name}'); EJSON.stringify([d.data_sources.find().toArray(), "
                "d.destinations.find().toArray(), d.webhooks.find().toArray()])",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert shown.count("fernet:") >= 3
        with MongoClient(mongo_uri) as client:
            stored_runs = json.dumps(client[db_name].job_runs.find().to_list(), default=str)
    finally:
        with MongoClient(mongo_uri) as client:
            client.drop_database(source_db)
            client.drop_database(dest_db)
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0
    logs = stack.logs()
    assert "run_finished" in logs or "run_succeeded" in logs or "http_request" in logs
    used = [reader_pw, writer_pw, webhook_secret, token, admin, key_file.read_text().strip()]
    for secret in used:
        assert secret not in logs
        assert secret not in shown
        assert secret not in stored_runs
