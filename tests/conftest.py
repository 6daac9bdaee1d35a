"""One SecantusDB subprocess per test session; a fresh database name per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from syncjobs.shared.embedded import EmbeddedServer, start_embedded
from syncjobs.shared.mongo import Database, connect, ensure_indexes
from syncjobs.shared.secrets import install_keys
from syncjobs.shared.settings import Settings

from tests.fixtures.security import TEST_SECRET_KEY, relaxed_overrides


@pytest.fixture(scope="session", autouse=True)
def secret_keys() -> None:
    """Stores seal secrets with this process's keys: tests that use a store directly need them too."""
    install_keys([TEST_SECRET_KEY])


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    storage = tmp_path_factory.mktemp("secantus")
    server = start_embedded(storage, log_file=Path(storage) / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo_uri(embedded_server: EmbeddedServer) -> str:
    return embedded_server.uri


# The tests' injected clocks start in the past (the api's at 2026-01-15): with the default 30 days the
# server's TTL monitor, on real time once a minute, deleted a test's runs and change-log entries mid-test
# (CI saw a job's history lose its `create` and `edit`). The retention indexes keep ten years here.
TEST_RETENTION_DAYS = 3650


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(mongo_uri: str, db_name: str) -> Settings:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    return Settings.from_env(env).with_overrides(
        mongodb_uri=mongo_uri, database=db_name, run_retention_days=TEST_RETENTION_DAYS, **relaxed_overrides()
    )


@pytest.fixture
async def db(mongo_uri: str, db_name: str) -> AsyncIterator[Database]:
    client = connect(mongo_uri)
    database = client[db_name]
    await ensure_indexes(database, run_retention_days=TEST_RETENTION_DAYS)
    try:
        yield database
    finally:
        await client.drop_database(db_name)
        await client.close()
