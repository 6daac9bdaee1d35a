"""syncjobs: a MongoDB-backed scheduler for recurring data-sync jobs.

Installed as one top-level package: `syncjobs.api`, `syncjobs.worker`, `syncjobs.executor` and
`syncjobs.shared` (mapped from the repository's top-level folders), beside `syncjobs.cli` and
`syncjobs.up`, the entry point and the wiring of the whole application.
"""
