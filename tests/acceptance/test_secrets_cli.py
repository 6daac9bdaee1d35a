"""Secrets at rest from the command line: api and worker refuse to start without a key, and
`syncjobs secrets rotate` re-encrypts every stored secret under the first key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from bson import ObjectId
from syncjobs.shared.models import DestinationInput
from syncjobs.shared.mongo import Database
from syncjobs.shared.secrets import SecretKeyError, install_keys, is_sealed, open_sealed
from syncjobs.shared.store import destinations
from syncjobs.shared.store.webhooks import WebhookInput, create_webhook

from tests.fixtures.security import SECOND_SECRET_KEY, TEST_SECRET_KEY, security_env


def _syncjobs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "syncjobs", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def keys_restored() -> Iterator[None]:
    yield
    install_keys([TEST_SECRET_KEY])


@pytest.mark.parametrize("command", ["api", "worker"])
def test_api_and_worker_refuse_to_start_without_a_key(command: str, mongo_uri: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")} | {"SYNCJOBS_MONGODB_URI": mongo_uri}
    result = _syncjobs(command, env=env)
    assert result.returncode == 2
    assert "SYNCJOBS_SECRET_KEYS is not set" in result.stderr
    result = _syncjobs(command, env=env | {"SYNCJOBS_SECRET_KEYS": "not-a-key"})
    assert result.returncode == 2 and "not a Fernet key" in result.stderr


async def test_rotate_re_encrypts_everything_under_the_first_key(
    db: Database, mongo_uri: str, keys_restored: None
) -> None:
    ws = ObjectId()
    body = DestinationInput.model_validate(
        {"name": "dw", "config": {"uri": "mongodb://w:pa55@dw.example/", "database": "d"}}
    )
    await destinations.store.create(db, ws, body)
    await create_webhook(
        db, ws, WebhookInput.model_validate({"url": "https://h.example/", "secret": "s" * 20}), datetime.now(UTC)
    )
    legacy = {
        "_id": ObjectId(),
        "workspaceId": ws,
        "name": "old",
        "kind": "mongodb",
        "config": {"uri": "mongodb://o:old-pw@o.example/", "database": "d"},
    }
    await db.data_sources.insert_one(legacy)  # stored before secrets were encrypted

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    env |= security_env(SYNCJOBS_SECRET_KEYS=f"{SECOND_SECRET_KEY},{TEST_SECRET_KEY}")
    env |= {"SYNCJOBS_MONGODB_URI": mongo_uri, "SYNCJOBS_DATABASE": db.name}
    result = _syncjobs("secrets", "rotate", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["data_sources=1", "destinations=1", "webhooks=1"]

    install_keys([SECOND_SECRET_KEY])  # the old key is gone: everything still opens
    stored = [
        (await db.destinations.find_one({}) or {})["config"]["uri"],
        (await db.data_sources.find_one({}) or {})["config"]["uri"],
        (await db.webhooks.find_one({}) or {})["secret"],
    ]
    assert all(is_sealed(value) for value in stored)
    assert [open_sealed(value) for value in stored] == [
        "mongodb://w:pa55@dw.example/",
        "mongodb://o:old-pw@o.example/",
        "s" * 20,
    ]
    install_keys([TEST_SECRET_KEY])
    with pytest.raises(SecretKeyError):
        open_sealed(stored[0])
