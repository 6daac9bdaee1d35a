"""The API fuzz of tests/integration/test_api_fuzz.py, run longer: many examples per operation against a
`syncjobs api` on a throwaway SecantusDB. Prints each operation's verdict, the status counts and every
failure; exits 1 on any.

    python -m bench.api_fuzz [--examples 200] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bson import ObjectId
from syncjobs.shared.mongo import close_client, connect
from syncjobs.shared.store import api_tokens

from bench.worker_support import DATABASE, server
from tests.fixtures.api_fuzz import fuzz
from tests.fixtures.api_process import ADMIN_TOKEN, api_process, call, prepare_target


async def _token(uri: str, workspace_id: str) -> str:
    client = connect(uri)
    try:
        return await api_tokens.create_token(client[DATABASE], ObjectId(workspace_id), "fuzz")
    finally:
        await close_client(client)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="generated requests per operation")
    parser.add_argument("--seed", type=int, default=None, help="a random seed (default: derandomized)")
    args = parser.parse_args()
    with server() as db_server, tempfile.TemporaryDirectory() as logs:
        log = Path(logs) / "api.log"
        with api_process(db_server.uri, DATABASE, log) as base_url:
            _, document = call(base_url, ADMIN_TOKEN, "GET", "/api/openapi.json")
            target = prepare_target(base_url, db_server.uri, lambda ws: asyncio.run(_token(db_server.uri, ws)))
            started = time.monotonic()
            report = fuzz(document, target, max_examples=args.examples, seed=args.seed, progress=print)
            elapsed = time.monotonic() - started
    print(f"\n{report.calls} requests over {len(document['paths'])} paths in {elapsed:.0f}s")
    print("statuses:", dict(sorted(report.statuses.items())))
    for operation, why in report.failures.items():
        print(f"\nFAILED {operation}\n{why}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
