"""The sync executor: moves one run's entities from a data source to the destination database."""
