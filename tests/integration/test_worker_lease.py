"""The scheduler lease and the per-job lock against a real server: races, tokens, lapse, release."""

from __future__ import annotations

import asyncio
import time

from pymongo.errors import AutoReconnect
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import worker_locks
from syncjobs.shared.store.worker_locks import LAPSED
from syncjobs.worker.lease import Lease

from tests.fixtures.eventually import eventually


async def test_concurrent_claims_exactly_one_wins(db: Database) -> None:
    leases = [Lease(db, f"w{i}", ttl_seconds=30) for i in range(5)]
    results = await asyncio.gather(*(lease.acquire() for lease in leases))
    assert sorted(results) == [False, False, False, False, True]
    winner = leases[results.index(True)]
    doc = await worker_locks.current(db)
    assert doc is not None
    assert doc["owner"] == winner.owner
    assert doc["fencingToken"] == 1
    assert {"host", "pid", "lockedUntil", "heartbeatAt"} <= doc.keys()


async def test_renewal_keeps_the_token_and_a_new_owner_gets_the_next_one(db: Database) -> None:
    first, second = Lease(db, "first", ttl_seconds=30), Lease(db, "second", ttl_seconds=30)
    assert await first.acquire()
    assert await first.acquire()
    assert first.fencing_token == 1
    assert not await second.acquire()
    await first.release()
    assert not first.is_held()
    assert await second.acquire()
    assert second.fencing_token == 2
    assert not await first.acquire()


async def test_a_lapsed_lease_goes_to_a_standby_and_the_old_owner_steps_down(db: Database) -> None:
    first, second = Lease(db, "first", ttl_seconds=0.6), Lease(db, "second", ttl_seconds=30)
    assert await first.acquire()
    await db.worker_locks.update_one({"_id": "scheduler"}, {"$set": {"owner": "intruder"}})
    await asyncio.wait_for(first.hold(), 5)  # its next renewal finds the lease is no longer its own
    assert not first.is_held()
    assert await eventually(second.acquire, within=10)
    assert second.fencing_token == 2


async def test_the_same_owner_gets_a_new_token_after_its_lease_lapsed(db: Database) -> None:
    lease = Lease(db, "solo", ttl_seconds=0.3)
    assert await lease.acquire()
    await eventually(lambda: _lapsed(db), within=10)
    assert await lease.acquire()
    assert lease.fencing_token == 2


async def _lapsed(db: Database) -> bool:
    return await db.worker_locks.count_documents({"_id": "scheduler", "$expr": LAPSED}) == 1


async def test_hold_renews_while_the_lease_is_ours(db: Database) -> None:
    lease = Lease(db, "holder", ttl_seconds=0.9)
    assert await lease.acquire()
    holding = asyncio.create_task(lease.hold())
    first_heartbeat = (await worker_locks.current(db) or {})["heartbeatAt"]
    await eventually(lambda: _heartbeat_after(db, first_heartbeat), within=10)
    assert not holding.done()
    assert lease.is_held()
    holding.cancel()


async def _heartbeat_after(db: Database, instant: object) -> bool:
    doc = await worker_locks.current(db)
    return doc is not None and doc["heartbeatAt"] > instant


async def test_a_holder_that_cannot_renew_steps_down_before_its_lease_lapses(db: Database) -> None:
    lease = Lease(db, "cut-off", ttl_seconds=1.0)
    assert await lease.acquire()
    assert lease.state is not None
    trusted_until = lease.state.valid_until

    async def unreachable() -> bool:
        raise AutoReconnect("no route to the database")

    lease.acquire = unreachable  # type: ignore[method-assign]
    await asyncio.wait_for(lease.hold(), 5)
    assert not lease.is_held()
    assert time.monotonic() >= trusted_until
    stored = await worker_locks.current(db)
    assert stored is not None and stored["owner"] == "cut-off"  # it stepped down on its own clock


async def test_two_replicas_given_the_same_worker_id_never_both_hold_the_lease(db: Database) -> None:
    first, twin = Lease(db, "same-id", ttl_seconds=30), Lease(db, "same-id", ttl_seconds=30)
    assert await first.acquire()
    assert not await twin.acquire()
    assert await first.acquire()
