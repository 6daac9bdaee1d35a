"""Issue 8 on `syncjobs up`: a workspace token made over REST syncs between password-protected databases,
every attack fails, mongosh shows only ciphertext, and no secret appears anywhere in the logs."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from syncjobs.shared.embedded import free_port

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    log: Path
    api_url: str
    workspace_id: str
    admin_token: str

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.api_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def logs(self) -> str:
        """Everything the stack wrote, but the banner (which shows the admin token by design)."""
        text = self.log.read_text()
        return re.sub(r"syncjobs is up\n.*?Press Ctrl-C to stop\.\n", "", text, flags=re.DOTALL)


@pytest.fixture
def stack(tmp_path: Path, mongo_uri: str, db_name: str) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    env.update(SYNCJOBS_MONGODB_URI=mongo_uri, SYNCJOBS_DATABASE=db_name, SYNCJOBS_LOG_LEVEL="debug")
    port = free_port()
    log = tmp_path / "stack.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "syncjobs", "up", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        banner = dict(re.findall(r"^\s+(workspace id|admin token):\s+(\S+)$", log.read_text(), re.MULTILINE))
        yield Stack(process, log, f"http://127.0.0.1:{port}", banner["workspace id"], banner["admin token"])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


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
    stack: Stack, tmp_path: Path, mongo_uri: str, db_name: str, database_users: dict[str, str]
) -> None:
    key_file = tmp_path / "data" / "secret-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (reader, reader_pw), (writer, writer_pw) = database_users.items()
    admin = stack.admin_token
    status, workspace = stack.call("POST", "/api/workspaces", admin, {"name": "tenant"})
    assert status == 201
    ws = f"/api/workspaces/{workspace['id']}"
    status, created = stack.call("POST", f"{ws}/tokens", admin, {"name": "tenant token"})
    assert status == 201
    token = created["token"]
    source_db, dest_db = f"src_{secrets.token_hex(4)}", f"dst_{secrets.token_hex(4)}"
    with MongoClient(mongo_uri) as client:
        client[source_db].orders.insert_many([{"_id": i, "total": i * 10} for i in range(5)])
    webhook_secret = f"whsec-{secrets.token_hex(16)}"
    try:
        source_config = {"uri": _authenticated(mongo_uri, reader, reader_pw), "database": source_db}
        status, source = stack.call(
            "POST", f"{ws}/data-sources", token, {"name": "shop", "kind": "mongodb", "config": source_config}
        )
        assert status == 201, source
        dest_config = {"uri": _authenticated(mongo_uri, writer, writer_pw), "database": dest_db}
        status, dest = stack.call(
            "POST", f"{ws}/destinations", token, {"name": "dw", "kind": "mongodb", "config": dest_config}
        )
        assert status == 201, dest
        hook = {"url": "https://hooks.example.com/x", "secret": webhook_secret}
        assert stack.call("POST", f"{ws}/webhooks", token, hook)[0] == 201
        job_body = {
            "name": "orders",
            "dataSourceId": source["id"],
            "destinationDatabaseId": dest["id"],
            "schedule": {"cron": "0 0 1 1 *"},
        }
        status, job = stack.call("POST", f"{ws}/sync-jobs", token, job_body)
        assert status == 201, job
        assert stack.call("POST", f"{ws}/sync-jobs/{job['id']}/run", token)[0] == 202
        deadline = time.monotonic() + 90
        while True:
            _, runs = stack.call("GET", f"{ws}/sync-jobs/{job['id']}/runs", token)
            finished = [r for r in runs["runs"] if r["status"] not in ("pending", "running")]
            if finished:
                break
            assert time.monotonic() < deadline, runs
            time.sleep(0.2)
        assert finished[0]["status"] == "succeeded", finished[0]
        with MongoClient(mongo_uri) as client:
            assert client[dest_db].orders.count_documents({}) == 5

        # the four attacks, with the workspace token, on `up` (which allows loopback)
        raw = {"name": "pwn", "kind": "command", "config": {"command": ["sh", "-c", "id > /tmp/x"]}}
        assert stack.call("POST", f"{ws}/data-sources", token, raw)[0] == 403
        control = {"uri": mongo_uri, "database": db_name}
        assert (
            stack.call("POST", f"{ws}/data-sources", token, {"name": "c", "kind": "mongodb", "config": control})[0]
            == 422
        )
        assert (
            stack.call("POST", f"{ws}/destinations", token, {"name": "c", "kind": "mongodb", "config": control})[0]
            == 422
        )
        for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/"):
            http = {"name": "h", "kind": "http", "config": {"baseUrl": url, "entities": {"a": {"path": "/a"}}}}
            assert stack.call("POST", f"{ws}/data-sources", token, http)[0] == 422
            assert stack.call("POST", f"{ws}/webhooks", token, {"url": url})[0] == 422
        # revoked: refused at once
        assert stack.call("DELETE", f"{ws}/tokens/{created['id']}", admin)[0] == 204
        assert stack.call("GET", ws, token)[0] == 401

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
