"""`python -P -m syncjobs.executor --run-id ID`: the same as `syncjobs exec`."""

from syncjobs.executor.cli import main

raise SystemExit(main())
