"""A stopping process closes its client without waiting on a database it found gone: endSessions is sent
to a database that answers, and not at all when the caller says it is gone (pymongo's server selection
would wait a whole 0.5 s heartbeat for it, whatever the budget)."""

from __future__ import annotations

import pytest
from syncjobs.shared.mongo import close_client, connect

from tests.fixtures.command_log import CommandLog


@pytest.mark.parametrize(("reachable", "sent"), [(True, ["endSessions"]), (False, [])])
async def test_end_sessions_goes_only_to_a_database_not_known_gone(
    mongo_uri: str, reachable: bool, sent: list[str]
) -> None:
    log = CommandLog()
    client = connect(mongo_uri, event_listeners=[log])
    await client.admin.command("ping")  # a session in the pool to end
    log.clear()

    await close_client(client, reachable=reachable)

    assert log.names == sent
