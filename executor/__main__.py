"""`python -m executor --run-id ID`: the same as `syncjobs exec`."""

from executor.cli import main

raise SystemExit(main())
