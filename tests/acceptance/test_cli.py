"""The `syncjobs` command as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import api_tokens, workspaces

from tests.fixtures.security import security_env


def _syncjobs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "syncjobs", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["up"],
        ["api"],
        ["worker"],
        ["exec"],
        ["token"],
        ["token", "create"],
        ["token", "rotate-admin"],
        ["secrets"],
        ["secrets", "rotate"],
    ],
)
def test_every_subcommand_has_help(command: list[str]) -> None:
    result = _syncjobs(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: syncjobs")


def _env(mongo_uri: str, db_name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    return {**env, **security_env(), "SYNCJOBS_MONGODB_URI": mongo_uri, "SYNCJOBS_DATABASE": db_name}


async def test_token_create_prints_a_workspace_token_once_and_stores_only_its_hash(
    db: Database, mongo_uri: str, db_name: str
) -> None:
    workspace = await workspaces.create_workspace(db, "acme")
    result = _syncjobs("token", "create", "--workspace", workspace.id, "--name", "ci", env=_env(mongo_uri, db_name))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    grant = await api_tokens.resolve_token(db, token)
    assert grant is not None and grant.workspace_id == ObjectId(workspace.id) and grant.name == "ci"
    stored = await db.api_tokens.find_one({"workspaceId": ObjectId(workspace.id)})
    assert stored is not None and token not in str(stored)


async def test_token_create_refuses_an_unknown_workspace(db: Database, mongo_uri: str, db_name: str) -> None:
    result = _syncjobs("token", "create", "--workspace", str(ObjectId()), env=_env(mongo_uri, db_name))
    assert result.returncode == 1
    assert "workspace" in result.stderr and "not found" in result.stderr
    assert await db.api_tokens.count_documents({}) == 0


async def test_token_rotate_admin_prints_a_new_admin_token_and_revokes_the_others(
    db: Database, mongo_uri: str, db_name: str
) -> None:
    old = await api_tokens.create_token(db, None, "old admin")
    result = _syncjobs("token", "rotate-admin", env=_env(mongo_uri, db_name))
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    grant = await api_tokens.resolve_token(db, new)
    assert grant is not None and grant.is_admin
    assert await api_tokens.resolve_token(db, old) is None
