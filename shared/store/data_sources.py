"""The `data_sources` collection: where a job reads from (mongodb, http or a Singer tap command)."""

from __future__ import annotations

from syncjobs.shared.models import DataSource, DataSourceInput
from syncjobs.shared.store.connections import ConnectionStore

store: ConnectionStore[DataSourceInput, DataSource] = ConnectionStore(
    "data_sources", "data source", DataSource, used_by="dataSourceId"
)
