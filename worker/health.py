"""Whether the database answers, logged once per change of state rather than once per failure."""

from __future__ import annotations

from syncjobs.shared.logging import get_logger

log = get_logger(__name__)


class DatabaseHealth:
    def __init__(self) -> None:
        self.available = True

    def succeeded(self) -> None:
        if not self.available:
            self.available = True
            log.info("database_available")

    def failed(self, error: BaseException) -> None:
        if self.available:
            self.available = False
            log.warning("database_unavailable", error=str(error)[:300])
