"""Against a real api process: a client whose `POST .../run` answer was lost retries with the same
Idempotency-Key and gets the same run id; one run exists, never a second."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from syncjobs.shared.mongo import Database

from tests.fixtures.api_process import ADMIN_TOKEN, api_process
from tests.fixtures.worker_jobs import make_job

pytestmark = pytest.mark.slow


def _post(url: str, key: str, *, read_answer: bool) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Idempotency-Key": key}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        # A client that times out drops the connection before reading: the answer is lost to it.
        return response.status, json.loads(response.read()) if read_answer else None


async def test_a_run_retried_after_its_answer_was_lost_is_the_same_run(
    db: Database, db_name: str, mongo_uri: str, tmp_path: Path
) -> None:
    job = await make_job(db, "ok", "0 0 1 1 *", datetime.now(UTC))
    with api_process(mongo_uri, db_name, tmp_path / "api.log") as base_url:
        url = f"{base_url}/api/workspaces/{job['workspaceId']}/sync-jobs/{job['_id']}/run"
        assert _post(url, "nightly-42", read_answer=False)[0] == 202
        status, answer = _post(url, "nightly-42", read_answer=True)
        status_again, again = _post(url, "nightly-42", read_answer=True)
    runs = await db.job_runs.find({"jobId": job["_id"]}).to_list()
    assert len(runs) == 1
    assert (status, answer) == (status_again, again) == (202, {"runId": str(runs[0]["_id"]), "status": "pending"})
