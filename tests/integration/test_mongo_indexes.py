from datetime import UTC, datetime

import pytest
from bson import ObjectId
from pymongo.errors import DuplicateKeyError
from syncjobs.shared.mongo import Database, ensure_indexes


async def test_fire_key_is_unique(db: Database) -> None:
    run = {"jobId": ObjectId(), "scheduledFor": datetime(2026, 1, 1, tzinfo=UTC), "trigger": "schedule", "attempt": 1}
    await db.job_runs.insert_one(dict(run))
    with pytest.raises(DuplicateKeyError):
        await db.job_runs.insert_one(dict(run))


async def test_ensure_indexes_is_idempotent_and_applies_a_new_retention(db: Database) -> None:
    await ensure_indexes(db, run_retention_days=7)
    indexes = await db.job_runs.index_information()
    assert indexes["retention_ttl"]["expireAfterSeconds"] == 7 * 86400
    assert indexes["fire_key"]["unique"] is True
