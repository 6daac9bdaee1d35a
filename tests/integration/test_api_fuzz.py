"""Schemathesis against a real `syncjobs api` on the test database, driven by `GET /api/openapi.json`:
every operation, valid and invalid requests, a workspace token and real ids; zero 5xx, every error in
the documented shape, every response allowed by the document. bench/api_fuzz.py runs it longer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bson import ObjectId
from syncjobs.shared.mongo import Database
from syncjobs.shared.store import api_tokens

from tests.fixtures.api_fuzz import fuzz
from tests.fixtures.api_process import ADMIN_TOKEN, api_process, call, prepare_target

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 20  # bounded for CI; bench/api_fuzz.py --examples N goes further


async def test_every_operation_holds_to_the_document_under_fuzzing(
    db: Database, mongo_uri: str, db_name: str, tmp_path: Path
) -> None:
    log = tmp_path / "api.log"
    loop = asyncio.get_running_loop()

    def workspace_token(workspace_id: str) -> str:
        made = asyncio.run_coroutine_threadsafe(api_tokens.create_token(db, ObjectId(workspace_id), "fuzz"), loop)
        return made.result(30)

    def run() -> object:
        with api_process(mongo_uri, db_name, log) as base_url:
            status, document = call(base_url, ADMIN_TOKEN, "GET", "/api/openapi.json")
            assert status == 200
            target = prepare_target(base_url, mongo_uri, workspace_token)
            return fuzz(document, target, max_examples=EXAMPLES_PER_OPERATION), len(document["paths"])

    report, path_count = await asyncio.to_thread(run)
    assert path_count >= 15
    assert report.failures == {}, "\n\n".join(f"{op}\n{why}" for op, why in report.failures.items())
    assert report.calls >= path_count * EXAMPLES_PER_OPERATION // 2
    assert not [status for status in report.statuses if status >= 500]
