"""The `destinations` collection: the MongoDB databases jobs write into."""

from __future__ import annotations

from syncjobs.shared.models import Destination, DestinationInput
from syncjobs.shared.store.connections import ConnectionStore

store: ConnectionStore[DestinationInput, Destination] = ConnectionStore(
    "destinations", "destination", Destination, used_by="destinationDatabaseId"
)
