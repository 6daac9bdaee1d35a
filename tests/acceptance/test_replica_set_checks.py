"""A replica set with arbiters is refused at start, with a message naming them and the override; with
SYNCJOBS_ALLOW_ARBITERS=1 the worker starts and says it runs with them (a proxy adds the arbiters to every
`hello` answer of the test server)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from syncjobs.shared.embedded import EmbeddedServer, free_port

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.security import security_env
from tests.fixtures.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
ARBITER = "arbiter.example:27017"


@pytest.fixture
def with_arbiter(embedded_server: EmbeddedServer) -> Iterator[TcpProxy]:
    proxy = TcpProxy(embedded_server.port).start()
    proxy.answer_hello_with({"arbiters": [ARBITER]})
    try:
        yield proxy
    finally:
        proxy.stop()


def _env(proxy: TcpProxy, db_name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOBS_")}
    return env | security_env() | {"SYNCJOBS_MONGODB_URI": proxy.uri(), "SYNCJOBS_DATABASE": db_name, **extra}


@pytest.mark.parametrize("command", ["worker", "api"])
def test_a_replica_set_with_arbiters_is_refused_at_start(with_arbiter: TcpProxy, db_name: str, command: str) -> None:
    env = _env(with_arbiter, db_name, SYNCJOBS_API_PORT=str(free_port()), SYNCJOBS_API_HOST="127.0.0.1")
    result = subprocess.run(
        [sys.executable, "-P", "-m", "syncjobs", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"syncjobs {command}: the replica set has arbiters ({ARBITER})" in result.stderr
    assert "SYNCJOBS_ALLOW_ARBITERS=1" in result.stderr


def test_allowed_arbiters_start_the_worker_with_a_warning(with_arbiter: TcpProxy, db_name: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = _env(with_arbiter, db_name, SYNCJOBS_ALLOW_ARBITERS="1", SYNCJOBS_WORKER_ID="allowed")
    with open(log, "ab") as out:
        worker = subprocess.Popen([sys.executable, "-P", "-m", "syncjobs", "worker"], env=env, stdout=out, stderr=out)
    try:
        eventually_blocking(lambda: "lease_acquired" in log.read_text() or worker.poll() is not None, within=60)
        assert worker.poll() is None, log.read_text()[-2000:]
        text = log.read_text()
        assert '"replica_set_has_arbiters"' in text and ARBITER in text
    finally:
        worker.terminate()
        worker.wait(30)
