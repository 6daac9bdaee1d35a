"""Issue 21's privilege separation, on real processes: the executor and the fork server hold no control
secret in their environment and cannot be read by a sibling process; a tenant's replica set that names
the control server as its primary fails the run before anything reaches it; a check that cannot be made
fails the run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import pytest
from bson import ObjectId
from syncjobs.shared.embedded import free_port
from syncjobs.shared.executor_protocol import CHANNEL_FLAG, EXECUTOR_COMMAND, RunChannel, executor_environment
from syncjobs.shared.mongo import Database
from syncjobs.shared.process import _prctl
from syncjobs.shared.run_spec import RunControlAccess
from syncjobs.shared.settings import Settings
from syncjobs.worker.executor_process import ExecutionOutcome, ExecutorSpec, run_executor
from syncjobs.worker.fork_server import ForkServer

from tests.acceptance.test_executor_cli import SYNCJOBS_CLI, run_cli
from tests.fixtures.eventually import eventually
from tests.fixtures.executor_world import (
    executor_env,
    make_job,
    make_mongodb_job,
    make_tap_job,
    new_run,
    run_channel,
    scratch_databases,
)
from tests.fixtures.fake_mongo import fake_mongo
from tests.fixtures.security import TEST_SECRET_KEY, TEST_TAP, security_env

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "admin-token-only-the-worker-holds"
PR_CAPBSET_DROP, CAP_SYS_PTRACE = 24, 19
# Reads one page of a process's memory, as a tap (a sibling of the same user) would try.
READ_MEMORY = """
import sys
pid = sys.argv[1]
try:
    start = int(open(f"/proc/{pid}/maps").readline().split("-")[0], 16)
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(start)
        mem.read(16)
    print("readable")
except OSError as exc:
    print(f"refused: {exc}")
"""


class HeldAccess(RunControlAccess):
    """The run's control access, holding the executor at its first cursor request until released."""

    def __init__(self, db: Database, run_id: ObjectId, job_id: ObjectId) -> None:
        super().__init__(db, run_id, job_id)
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def load_cursor(self, entity: str) -> Any | None:
        self.asked.set()
        await self.release.wait()
        return await super().load_cursor(entity)


@pytest.fixture
def worker_environment(monkeypatch: pytest.MonkeyPatch, db: Database, mongo_uri: str) -> Iterator[Settings]:
    """The worker's environment as production has it: the control URI, the key and the admin token."""
    for name, value in security_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SYNCJOBS_MONGODB_URI", mongo_uri)
    monkeypatch.setenv("SYNCJOBS_DATABASE", db.name)
    monkeypatch.setenv("SYNCJOBS_ADMIN_TOKEN", ADMIN_TOKEN)
    yield Settings.from_env()


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


@pytest.fixture
def without_ptrace_capability() -> None:
    """Tests run as root, whose CAP_SYS_PTRACE reads any process: from here on, what this process starts
    lacks it (it leaves the bounding set, so every later exec drops it), as a tap of the worker's user
    would. The executors, the fork server, the sibling and the dumpable probe then have equal capabilities,
    and only dumpability decides. Nothing the tests start needs the capability."""
    if _prctl is None or _prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0:
        pytest.skip("cannot drop CAP_SYS_PTRACE here")


async def sibling_reads_memory_of(pid: int) -> str:
    """What a process of the same user and capabilities (as a tap runs) gets from /proc/<pid>/mem."""
    sibling = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READ_MEMORY, str(pid), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await sibling.communicate()
    return out.decode().strip()


@pytest.mark.skipif(_prctl is None or not Path("/proc/self/mem").exists(), reason="needs Linux prctl and /proc")
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
async def test_no_executor_or_fork_server_holds_a_control_secret(
    db: Database, mongo_uri: str, worker_environment: Settings, warm: bool, without_ptrace_capability: None
) -> None:
    secrets = [TEST_SECRET_KEY.encode(), ADMIN_TOKEN.encode(), mongo_uri.encode()]
    fork_server = ForkServer() if warm else None
    spec = ExecutorSpec.from_settings(worker_environment, fork_server)
    assert not any(secret.decode() in value for value in spec.env.values() for secret in secrets)
    async with scratch_databases(mongo_uri, 2) as (source, dest):
        await source.items.insert_many([{"_id": i, "updatedAt": i} for i in range(3)])
        _, job_id = await make_mongodb_job(db, mongo_uri, source, dest, mode="incremental")
        run_id = await new_run(db, job_id)
        opened = await run_channel(db, run_id)
        access = HeldAccess(db, run_id, job_id)
        argv = [*spec.argv, "--run-id", str(run_id), CHANNEL_FLAG]
        running = asyncio.ensure_future(
            run_executor(
                argv,
                spec.env,
                60,
                asyncio.Event(),
                fork_server=fork_server,
                channel=RunChannel(opened.spec_line, access),
            )
        )
        try:
            await asyncio.wait_for(access.asked.wait(), 30)  # the executor is mid-run, its spec in hand
            parent = fork_server.pid if fork_server is not None else os.getpid()
            assert parent is not None
            # A warm executor is the fork server's only child; a cold one, ours with the run on its command line.
            executors = [pid for pid in children_of(parent) if warm or str(run_id).encode() in _cmdline(pid)]
            assert len(executors) == 1, executors
            processes = {"executor": executors[0], **({"fork server": parent} if fork_server is not None else {})}
            for role, pid in processes.items():
                environ = _environ(pid)  # we are root: we may read it, a tap may not
                assert b"PATH=" in environ and not [s for s in secrets if s in environ], role
                assert (await sibling_reads_memory_of(pid)).startswith("refused"), role
            dumpable = await asyncio.create_subprocess_exec("sleep", "60")
            try:  # the same probe on a dumpable process of the same user and capabilities
                assert await sibling_reads_memory_of(dumpable.pid) == "readable"
            finally:
                dumpable.kill()
                await dumpable.wait()
        finally:
            access.release.set()
            outcome: ExecutionOutcome = await running
            if fork_server is not None:
                await fork_server.close()
        assert (outcome.status, outcome.exit_code) == ("succeeded", 0), outcome.stderr_tail
        assert await dest.items.count_documents({}) == 3


@pytest.mark.skipif(_prctl is None or not Path("/proc/self/mem").exists(), reason="needs Linux prctl and /proc")
@pytest.mark.parametrize("command", ["worker", "api"])
async def test_the_worker_and_the_api_keep_their_memory_from_a_tap_of_their_user(
    db: Database, mongo_uri: str, command: str, without_ptrace_capability: None
) -> None:
    """They hold the secret keys and the control URI (a tap runs below the worker): once started, a process
    of the same user and capabilities cannot read their memory."""
    env = {
        **os.environ,
        **security_env(),
        "SYNCJOBS_MONGODB_URI": mongo_uri,
        "SYNCJOBS_DATABASE": db.name,
        "SYNCJOBS_API_PORT": str(free_port()),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", "syncjobs", command, env=env, stdout=DEVNULL, stderr=DEVNULL
    )
    try:

        async def refused() -> bool:
            return (await sibling_reads_memory_of(process.pid)).startswith("refused")

        await eventually(refused, f"{command} marked non-dumpable")
        assert process.returncode is None
    finally:
        process.terminate()
        await process.wait()


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def production_like(db: Database) -> dict[str, str]:
    """The executor's environment with one allowed tenant address and no database of the control server."""
    env = security_env(SYNCJOBS_ALLOWED_NETWORKS="127.0.0.1/32", SYNCJOBS_CONTROL_CLUSTER_DATABASES="")
    return executor_environment({**os.environ, **env}) | {"SYNCJOBS_DATABASE": db.name}


async def run_into(db: Database, dest_uri: str, dest_database: str) -> tuple[ExecutionOutcome, ObjectId]:
    """A tap run (two rows) into the destination, run as the worker runs it: over the run channel."""
    _, job_id = await make_job(
        db,
        source_kind="command",
        source_config={"tap": TEST_TAP, "config": {"streams": {"rows": [{"id": 1, "seq": 1}, {"id": 2, "seq": 2}]}}},
        dest_uri=dest_uri,
        dest_database=dest_database,
    )
    run_id = await new_run(db, job_id)
    argv = [*EXECUTOR_COMMAND, "--run-id", str(run_id), CHANNEL_FLAG]
    channel = await run_channel(db, run_id)
    return await run_executor(argv, production_like(db), 60, asyncio.Event(), channel=channel), job_id


async def test_a_replica_set_that_names_the_control_server_as_primary_fails_the_run(
    db: Database, mongo_uri: str
) -> None:
    """Issue 21, finding 1: the tenant's server passes as the only member of its set, then answers a write
    with NotWritablePrimary and names the control server as primary; the driver would follow."""
    control = mongo_uri.split("://", 1)[1].split("/", 1)[0].split(",")[0]
    tokens_before = await db.api_tokens.count_documents({})
    async with fake_mongo(primary_after=control) as tenant:
        outcome, _ = await run_into(db, f"mongodb://{tenant.me}/?replicaSet=X", db.name)
        assert outcome.status == "failed", outcome.stderr_tail
        assert "control database's server" in (outcome.error or ""), outcome.error
        assert tenant.pivoted  # the pivot happened: the refusal is the fence's, not the fake's silence
    assert "rows" not in await db.list_collection_names()
    assert await db.api_tokens.count_documents({}) == tokens_before


async def test_a_check_that_cannot_be_made_fails_the_run(db: Database) -> None:
    """Issue 21, finding 2: `timeoutMS=6` made the first ping fail, read as "unreachable, nothing to
    check"; now the run fails there, and nothing is written."""
    async with fake_mongo(slow_ping_seconds=0.5) as tenant:
        outcome, _ = await run_into(db, f"mongodb://{tenant.me}/?replicaSet=X&timeoutMS=6", "tenant")
        assert outcome.status == "failed" and outcome.exit_code == 1, outcome.stderr_tail
        assert "destination.config." in (outcome.error or ""), outcome.error
        assert tenant.writes == []


async def test_an_ipv4_mapped_alias_of_the_control_server_fails_the_run(db: Database, mongo_uri: str) -> None:
    """Issue 21, finding 2's alias: `[::ffff:127.0.0.1]` is the control server's own 127.0.0.1."""
    port = mongo_uri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    tokens_before = await db.api_tokens.count_documents({})
    outcome, _ = await run_into(db, f"mongodb://[::ffff:127.0.0.1]:{port}/?directConnection=true", db.name)
    assert outcome.status == "failed", outcome.stderr_tail
    error = outcome.error or ""  # refused as the egress policy's IPv4-mapped form, or else by the fence
    assert "destination.config.uri" in error and (
        "control database's server" in error or "IPv4" in error or "refuses" in error
    ), error
    assert "rows" not in await db.list_collection_names()
    assert await db.api_tokens.count_documents({}) == tokens_before


async def test_a_tap_reads_nothing_of_its_executor(
    db: Database, mongo_uri: str, tmp_path: Path, without_ptrace_capability: None
) -> None:
    """Issue 21, finding 5, through `syncjobs exec` by hand with the worker's whole environment: the tap's
    parent is the executor, which has no secret in its environment and whose memory the tap cannot read."""
    report = tmp_path / "parent.json"
    tap_config = {"streams": {"rows": [{"id": 1, "seq": 1}]}, "parentFile": str(report)}
    async with scratch_databases(mongo_uri, 1) as (dest,):
        _, job_id = await make_tap_job(db, mongo_uri, dest, tap_config)
        env = executor_env(mongo_uri, db.name) | {"SYNCJOBS_ADMIN_TOKEN": ADMIN_TOKEN}
        code, events, stderr = await run_cli([*SYNCJOBS_CLI, "exec", "--run-id", str(await new_run(db, job_id))], env)
        assert (code, events[-1]["status"]) == (0, "succeeded"), stderr
        assert await dest.rows.count_documents({}) == 1
    ancestors = json.loads(report.read_text())
    executors = [i for i, a in enumerate(ancestors) if "--channel" in a["cmdline"]]
    assert executors, ancestors
    up_to_the_executor = ancestors[: executors[0] + 1]  # above it: `syncjobs exec`'s privileged side (the worker's)
    leaked = [s for s in (TEST_SECRET_KEY, ADMIN_TOKEN, mongo_uri) for a in up_to_the_executor if s in a["environ"]]
    assert leaked == [] and up_to_the_executor[-1]["mem"].startswith("refused"), ancestors
    # As root (the tests' user) the tap may still list an executor's environ; as the worker's own non-root
    # user (the Dockerfile's) the kernel refuses a non-dumpable process's environ and maps as well.
