"""One base class for every domain error; the API maps each kind to one HTTP status (api/errors.py)."""

from __future__ import annotations

from typing import Any


class SyncjobsError(Exception):
    code = "error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ArbitersRefused(SyncjobsError):
    """The replica set has arbiters, whose majority writes cannot be relied on (shared/mongo.py)."""

    code = "arbiters_refused"


class NotFound(SyncjobsError):
    code = "not_found"


class Conflict(SyncjobsError):
    """A unique key (a name in a workspace) is already taken."""

    code = "conflict"


class ValidationFailed(SyncjobsError):
    """Input that is well-formed JSON but not acceptable; names the offending field."""

    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", [{"field": field, "message": message}])
        self.field = field


class InvalidCron(ValidationFailed):
    def __init__(self, message: str, field: str = "schedule.cron") -> None:
        super().__init__(field, message)


class InvalidTimezone(ValidationFailed):
    def __init__(self, message: str, field: str = "schedule.timezone") -> None:
        super().__init__(field, message)


class PreconditionFailed(SyncjobsError):
    """If-Match (or a body's `version`) names a version the document no longer has: nothing was written."""

    code = "precondition_failed"


class Unauthorized(SyncjobsError):
    code = "unauthorized"


class Forbidden(SyncjobsError):
    code = "forbidden"


class DatabaseUnavailable(SyncjobsError):
    code = "database_unavailable"


class StaleLeader(SyncjobsError):
    """A write carried a fencing token lower than the lease's: this worker no longer leads."""

    code = "stale_leader"
