"""One base class for every domain error; the API maps each kind to one HTTP status (api/errors.py)."""

from __future__ import annotations

import re
from typing import Any


class SyncjobsError(Exception):
    """A domain error. Its `code`, the API's machine-readable name for it, is the class name in snake case
    (NotFound: `not_found`) unless the class names another; a refinement of a kind keeps the kind's code."""

    code = "error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__ and SyncjobsError in cls.__bases__:
            cls.code = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ArbitersRefused(SyncjobsError):
    """The replica set has arbiters, whose majority writes cannot be relied on (shared/mongo.py)."""


class NotFound(SyncjobsError):
    """An id that names nothing the caller may see (another workspace's object is not found either)."""


class Conflict(SyncjobsError):
    """A unique key (a name in a workspace) is already taken."""


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


class Unauthorized(SyncjobsError):
    """No token, or one that is unknown, revoked or expired."""


class Forbidden(SyncjobsError):
    """The caller's token may not do this (a `read` token writing, a workspace token doing an admin's work)."""


class DatabaseUnavailable(SyncjobsError):
    """The database cannot be reached (api/errors.py answers a driver's connection failure with this code)."""


class StaleLeader(SyncjobsError):
    """A write carried a fencing token lower than the lease's: this worker no longer leads."""
