"""`python -P -m syncjobs ...`: the same as the `syncjobs` command."""

from syncjobs.cli import main

raise SystemExit(main())
