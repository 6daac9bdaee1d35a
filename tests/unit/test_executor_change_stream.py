"""How the change stream's server errors read: a standalone server, lost history, anything else."""

from __future__ import annotations

from bson import Timestamp
from pymongo.errors import OperationFailure
from syncjobs.executor.change_stream import HistoryLost, ResumePoint, stream_error
from syncjobs.executor.sources import SourceError


def test_a_standalone_server_fails_the_run_saying_why() -> None:
    error = stream_error(OperationFailure("The $changeStream stage is only supported on replica sets", code=40573))
    assert isinstance(error, SourceError)
    assert str(error) == "changeStream needs a replica set (or SecantusDB) source; this server is standalone"


def test_lost_history_and_bad_tokens_are_history_lost() -> None:
    lost = OperationFailure("x", code=286, details={"errmsg": "resume point may no longer be in the oplog"})
    assert str(stream_error(lost)) == "change stream history lost: resume point may no longer be in the oplog"
    assert isinstance(stream_error(OperationFailure("bad", code=260)), HistoryLost)
    assert isinstance(stream_error(OperationFailure("resume token is not a valid resume token", code=9)), HistoryLost)
    assert isinstance(stream_error(OperationFailure("boom", code=8000)), SourceError)


def test_a_resume_point_round_trips_through_sync_state_and_rejects_junk() -> None:
    point = ResumePoint({"_data": "82"}, Timestamp(1_700_000_000, 3))
    assert ResumePoint.from_state(point.to_state()) == point
    assert ResumePoint.from_state(None) is None
    assert ResumePoint.from_state({"token": {"_data": "82"}, "clusterTime": 5}) is None
